/* The terminal client's internals, shared by its files and nobody else (client.h is the entry).
 *
 *   client.c       the command line: flags, commands and their help, the request paths, the
 *                  commands (run_*), client_main and the exit status
 *   client_http.c  the connection: credentials, libcurl requests, answers, JSON answers
 *   client_out.c   output: formatting, tables, the span tree, the top functions from folded
 *                  text, -o files
 */
#ifndef APP_CLIENT_INTERNAL_H
#define APP_CLIENT_INTERNAL_H

#include "client.h"

#include "../common/arena.h"
#include "../common/buf.h"
#include "../common/err.h"

#include <curl/curl.h>
#include <jansson.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define DEFAULT_URL "http://127.0.0.1:4040"
#define MAX_SECRET  4096
#define SEC_NS      1000000000LL

/* The flags, indexes into cmdline.val and .seen (client.c describes each). */
enum {
    F_URL,
    F_TENANT,
    F_TOKEN_FILE,
    F_BASIC_FILE,
    F_CA_FILE,
    F_OUTPUT,
    F_TIMEOUT,
    F_HELP,
    F_SERVICE,
    F_SINCE,
    F_FROM,
    F_UNTIL,
    F_LIMIT,
    F_TYPE,
    F_SORT,
    F_FILE,
    NFLAGS
};

typedef struct command command; /* a command of the table in client.c */

/* ---- the command line ---- */

typedef struct cmdline cmdline;
struct cmdline {
    const command *cmd; /* NULL: none given */
    const char *arg;    /* its positional argument, if it takes one */
    char id[33];        /* the trace or span id in it, lowercase */
    const char *val[NFLAGS];
    int seen[NFLAGS];
    /* read from the flags */
    int json;
    long timeout_ms;
    long limit;
    const char *type_id, *type_label;
    int sort_total;
};

/* ---- the connection ---- */

typedef struct conn conn;
struct conn {
    CURL *curl;
    char base[2048];        /* the URL without trailing '/' */
    char shown[2048];       /* the same without userinfo: what messages print */
    struct curl_slist *hdr; /* tenant and Authorization: wiped before they are freed */
    char secret[MAX_SECRET];
    int has_creds;
    long timeout_ms;
    char errbuf[CURL_ERROR_SIZE];
};

/* An answer: status, body (NUL-terminated after a request that completed) and one header. */
typedef struct answer {
    long status;
    sp_buf body;
    int too_big;
    long unresolved; /* X-Spanprof-Unresolved-Frames */
} answer;

/* ---- output ---- */

/* A table of text cells printed in aligned columns, as kubectl prints them. */
typedef struct table {
    size_t ncols, nrows, cap;
    const char **cells;
    const char *right; /* per column: 'r' = right-aligned */
    sp_arena *a;
} table;

typedef struct func {
    const char *name;
    size_t len;
    int64_t self, total;
    size_t stamp; /* the last stack (line number + 1) that counted it in total */
} func;

typedef struct funcs {
    func *v;
    size_t n, cap;
    size_t *slots; /* open addressing: index into v, SIZE_MAX = empty */
    size_t nslots;
    sp_arena *a;
} funcs;

/* ---- client_http.c ---- */

/* Opens the connection the flags describe (URL, tenant, credentials, CA, timeout). */
int conn_open(conn *c, const cmdline *cl, sp_err *err);
/* Frees the connection, wiping the headers and credentials first. */
void conn_close(conn *c);
/* GET base+path; 0 for a 200, else an SP_E* code with the server's message (see the file). */
int http_get(conn *c, const char *path, answer *ans, sp_err *err);
/* http_get(), then the answer parsed into *doc, which must be a JSON object. */
int get_json(conn *c, const char *path, answer *ans, json_t **doc, sp_err *err);

/* ---- client_out.c ---- */

/* A copy of n bytes in a, terminal control characters replaced by '?'; NULL when out of memory. */
char *clean(sp_arena *a, const char *s, size_t n);
/* ns for people: "0s", "750ns", "12.5us", "900ms", "1.25s", "1m05s", "2h03m". */
void fmt_dur(int64_t ns, char *out, size_t cap);
/* A value in the profile's unit: a duration when ns, else the number. */
void fmt_value(int64_t v, int ns, char *out, size_t cap);
/* Unix nanoseconds as local time by strftime fmt (the number when that fails). */
void fmt_time(int64_t unix_ns, const char *fmt, char *out, size_t cap);
/* Appends a row of t->ncols strings (copied, cleaned); nonzero when out of memory. */
int table_row(table *t, ...);
/* Prints the table in aligned columns. */
void table_print(const table *t, FILE *f);
/* Prints the answer as it came, ending in a newline (--output json). */
void print_raw(const answer *ans);
/* An integer member, also when sent as a string; 0 when missing. */
int64_t jint(const json_t *o, const char *key);
/* A string member; "" when missing. */
const char *jstr(const json_t *o, const char *key);
/* The print order of a trace's spans (order) and each one's depth in the tree; -1 on ENOMEM. */
int span_tree(const json_t *spans, sp_arena *a, size_t *order, int *depth);
/* Self and total per function from folded text, the sum of the values and the stacks. */
int top_from_folded(char *text, size_t len, funcs *f, int64_t *sum, size_t *nstacks, sp_err *err);
/* The qsort_r order of the top functions; ud points to an int, nonzero to sort by total. */
int func_cmp(const void *pa, const void *pb, void *ud);
/* The first shown functions as top's --output json on stdout; nonzero on failure. */
int print_top_json(const cmdline *cl, const char *id, const char *unit, const funcs *f,
                   size_t shown, int64_t sum);
/* -o FILE: opens a temporary file beside it (stdout for none or "-"). */
int out_open(const char *file, sp_arena *a, char **tmp, FILE **f, sp_err *err);
/* Closes what out_open() opened, renaming the temporary file over FILE when ok. */
int out_close(const char *file, char *tmp, FILE *f, int ok, sp_err *err);

#endif

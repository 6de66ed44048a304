/* spanprof query: the terminal client (see client.h).
 *
 * Invariants:
 *   1. A credential goes to libcurl and nowhere else: it is read from its file (or
 *      $SPANPROF_QUERY_TOKEN) into one buffer, copied into the request headers, and both are wiped
 *      before the process exits; messages show the URL without its userinfo.
 *   2. Nothing is written to -o FILE unless the whole answer arrived: the answer goes to a
 *      temporary file beside it that is renamed over FILE at the end.
 *   3. The exit status comes from the SP_E* code of the first failure through one table
 *      (exit_status()); a usage error is found before any request is sent.
 *
 * This file: the command line, the commands and their help, the commands themselves and the entry
 * point; the connection is in client_http.c, the output in client_out.c (client_internal.h). */
#include "client_internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CPU_TYPE        "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
#define OFF_CPU_TYPE    "off_cpu:off_cpu:nanoseconds::"
#define PUTS(o, lit)    sp_buf_append((o), (lit), sizeof(lit) - 1)
#define SEE_HELP        "Run 'spanprof query --help' for usage."
#define GLOBAL_FLAGS_AT "Flags for every command: see 'spanprof query --help'.\n"

/* ---- commands and flags ----------------------------------------------------------------------
 */

enum {
    C_SERVICES = 1 << 0,
    C_TRACES = 1 << 1,
    C_TRACE = 1 << 2,
    C_TOP = 1 << 3,
    C_PPROF = 1 << 4,
    C_FOLDED = 1 << 5,
    C_HELP = 1 << 6,
    C_ALL = (1 << 7) - 1,
};

typedef struct flag_def {
    const char *name;
    char shortname;
    int takes_value;
    int commands; /* C_* where the flag means something */
} flag_def;

static const flag_def flag_defs[NFLAGS] = {
    [F_URL] = {"url", 0, 1, C_ALL},
    [F_TENANT] = {"tenant", 0, 1, C_ALL},
    [F_TOKEN_FILE] = {"token-file", 0, 1, C_ALL},
    [F_BASIC_FILE] = {"basic-auth-file", 0, 1, C_ALL},
    [F_CA_FILE] = {"ca-file", 0, 1, C_ALL},
    [F_OUTPUT] = {"output", 0, 1, C_ALL & ~(C_PPROF | C_FOLDED)},
    [F_TIMEOUT] = {"timeout", 0, 1, C_ALL},
    [F_HELP] = {"help", 'h', 0, C_ALL},
    [F_SERVICE] = {"service", 0, 1, C_TRACES},
    [F_SINCE] = {"since", 0, 1, C_SERVICES | C_TRACES},
    [F_FROM] = {"from", 0, 1, C_SERVICES | C_TRACES},
    [F_UNTIL] = {"until", 0, 1, C_SERVICES | C_TRACES},
    [F_LIMIT] = {"limit", 'n', 1, C_TRACES | C_TOP},
    [F_TYPE] = {"type", 0, 1, C_TOP | C_PPROF | C_FOLDED},
    [F_SORT] = {"sort", 0, 1, C_TOP},
    [F_FILE] = {"output-file", 'o', 1, C_PPROF | C_FOLDED},
};

static const char main_help[] =
    "spanprof query: ask a running spanprof server, from a terminal or a script.\n"
    "\n"
    "Usage:\n"
    "  spanprof query <command> [arguments] [flags]\n"
    "\n"
    "Commands:\n"
    "  services                the services that sent spans recently\n"
    "  traces --service NAME   a service's recent traces, newest first\n"
    "  trace TRACE_ID          a trace's spans as a tree, with CPU and off-CPU time per span\n"
    "  top SPAN_ID             a span's top functions by self and total time\n"
    "  pprof SPAN_ID -o FILE   save a span's profile as gzipped pprof (for go tool pprof)\n"
    "  folded SPAN_ID          a span's profile as folded stacks (flamegraph.pl, speedscope)\n"
    "  help [COMMAND]          this text, or a command's\n"
    "\n"
    "Flags for every command:\n"
    "  --url URL               the server (default: $SPANPROF_URL, else " DEFAULT_URL ");\n"
    "                          a path after the host is kept, for a server behind a proxy\n"
    "  --tenant ID             the tenant, sent as X-Scope-OrgID (default: none, which the\n"
    "                          server takes as \"anonymous\")\n"
    "  --token-file FILE       send the file's first credential line as a bearer token; without\n"
    "                          it, $SPANPROF_QUERY_TOKEN holds the token itself\n"
    "  --basic-auth-file FILE  send the file's first credential line, user:password, as HTTP\n"
    "                          basic credentials\n"
    "                          (the files are read as the server's --query-auth-token-file and\n"
    "                          --query-basic-auth-file: blank lines and # comments skipped)\n"
    "  --ca-file FILE          trust this CA for an https:// URL (default: the system's CAs)\n"
    "  --output text|json      text for people (default), or json for scripts: the server's\n"
    "                          answer as it is (services, traces, trace) or the table as JSON\n"
    "                          (top); not for pprof and folded, which write the profile itself\n"
    "  --timeout DURATION      give up on the server after this long (default 30s)\n"
    "  -h, --help              help for a command\n"
    "\n"
    "Flags go before or after the command and its argument, as --flag VALUE or --flag=VALUE;\n"
    "'--' ends the flags.\n"
    "\n"
    "Exit status:\n"
    "  0  done (an empty list or profile is not an error)\n"
    "  1  not found: no such trace, or a span without samples the server does not know (404)\n"
    "  2  usage error: bad flags or arguments, or a request the server calls malformed (400)\n"
    "  3  the server failed, could not be reached or did not answer in time, or the answer\n"
    "     could not be written\n"
    "  4  authentication refused: missing or wrong credentials, or a refused tenant (401, 403)\n"
    "Errors go to stderr with the server's message.\n"
    "\n"
    "Examples:\n"
    "  spanprof query services\n"
    "  spanprof query traces --service checkout --since 15m\n"
    "  spanprof query trace 4bf92f3577b34da6a3ce929d0e0e4736\n"
    "  spanprof query top 00f067aa0ba902b7 --type off-cpu\n"
    "  spanprof query pprof 00f067aa0ba902b7 -o span.pb.gz && go tool pprof -top span.pb.gz\n"
    "  SPANPROF_URL=https://spanprof:4040 spanprof query traces --service checkout --output json "
    "\\\n"
    "    --tenant team-a --token-file ~/.spanprof-token | jq -r '.traces[0].trace_id'\n"
    "\n"
    "Run 'spanprof query <command> --help' for a command's flags.\n";

static const char services_help[] =
    "spanprof query services: the services that sent spans recently.\n"
    "\n"
    "Usage:\n"
    "  spanprof query services [--since 1h | --from T [--until T]] [flags]\n"
    "\n"
    "Prints one service name per line, sorted: the services with spans starting in the range.\n"
    "--output json prints the server's answer, {\"services\":[...]}.\n"
    "\n"
    "Flags:\n"
    "  --since DURATION        spans that started within this long before now (default 1h):\n"
    "                          30s, 15m, 2h, 1h30m, 7d\n"
    "  --from T, --until T     a range instead, in any form the server's /render takes:\n"
    "                          now-2h, YYYYMMDD, unix seconds, milliseconds or nanoseconds\n"
    "                          (--until defaults to now)\n"
    "\n" GLOBAL_FLAGS_AT;

static const char traces_help[] =
    "spanprof query traces: a service's recent traces, newest first.\n"
    "\n"
    "Usage:\n"
    "  spanprof query traces --service NAME [--since 1h | --from T [--until T]] [-n 20] [flags]\n"
    "\n"
    "A table of the traces with a span of the service starting in the range: when each started\n"
    "(local time), its id, how long it lasted, its spans, the CPU and off-CPU time profiled in\n"
    "it, and its root span's name (with the root's service when that is another one).\n"
    "--output json prints the server's answer:\n"
    "  {\"service\":..., \"traces\":[{\"trace_id\", \"root_span_id\", \"root_name\", "
    "\"start_ns\",\n"
    "   \"duration_ns\", \"span_count\", \"cpu_time_ns\", \"off_cpu_time_ns\"}], "
    "\"truncated\":bool}\n"
    "\n"
    "Flags:\n"
    "  --service NAME          the service (required; 'spanprof query services' lists them)\n"
    "  --since DURATION        traces that started within this long before now (default 1h)\n"
    "  --from T, --until T     a range instead, as for 'services'\n"
    "  -n, --limit N           at most N traces, 1 to 1000 (default 20)\n"
    "\n"
    "Examples:\n"
    "  spanprof query traces --service checkout\n"
    "  spanprof query traces --service checkout --since 15m -n 5 --output json \\\n"
    "    | jq -r '.traces[].trace_id'\n"
    "\n" GLOBAL_FLAGS_AT;

static const char trace_help[] =
    "spanprof query trace: a trace's spans as a tree, with the time profiled in each.\n"
    "\n"
    "Usage:\n"
    "  spanprof query trace TRACE_ID [flags]\n"
    "\n"
    "TRACE_ID is 32 hex digits. One row per span, children under their parent and indented,\n"
    "siblings in start order: the span's start after the trace's first span, its duration, the\n"
    "CPU time and off-CPU (waiting) time profiled inside it, its id, service and name. A span\n"
    "whose parent spanprof never received starts a tree of its own.\n"
    "--output json prints the server's answer (GET /api/v1/traces/{trace_id}): per span\n"
    "span_id, parent_span_id, name, service, start_time_unix_nano (a string), duration_ns,\n"
    "cpu_time_ns, off_cpu_time_ns, other_time_ns, ...\n"
    "\n"
    "Examples:\n"
    "  spanprof query trace 4bf92f3577b34da6a3ce929d0e0e4736\n"
    "  spanprof query trace 4bf92f3577b34da6a3ce929d0e0e4736 --output json \\\n"
    "    | jq '.spans | max_by(.off_cpu_time_ns) | .span_id'\n"
    "\n" GLOBAL_FLAGS_AT;

static const char top_help[] =
    "spanprof query top: a span's top functions.\n"
    "\n"
    "Usage:\n"
    "  spanprof query top SPAN_ID [--type cpu|off-cpu|TYPE] [-n 20] [--sort self|total] [flags]\n"
    "\n"
    "SPAN_ID is 16 hex digits. Computed from the span's folded profile: a function's self time\n"
    "is what was sampled with it as the leaf frame; its total time is what was sampled with it\n"
    "anywhere on the stack, counted once per stack (recursion does not count twice). Percentages\n"
    "are of the span's whole profile.\n"
    "--output json: {\"span_id\", \"profile_type\", \"unit\", \"total\", \"functions_count\",\n"
    "  \"sort\", \"functions\":[{\"name\", \"self\", \"total\"}]}, values in the unit "
    "(nanoseconds\n"
    "  for cpu and off-cpu).\n"
    "\n"
    "Flags:\n"
    "  --type T                cpu (default), off-cpu (time spent waiting: I/O, locks, sleep), or\n"
    "                          a full profile type id such as\n"
    "                          memory:alloc_space:bytes:space:bytes\n"
    "  -n, --limit N           show the first N functions (default 20; 0 = all)\n"
    "  --sort self|total       order by self (default) or total\n"
    "\n"
    "Examples:\n"
    "  spanprof query top 00f067aa0ba902b7\n"
    "  spanprof query top 00f067aa0ba902b7 --type off-cpu --sort total -n 5\n"
    "\n" GLOBAL_FLAGS_AT;

static const char pprof_help[] =
    "spanprof query pprof: save a span's profile as gzipped pprof.\n"
    "\n"
    "Usage:\n"
    "  spanprof query pprof SPAN_ID -o FILE [--type cpu|off-cpu|TYPE] [flags]\n"
    "\n"
    "SPAN_ID is 16 hex digits. FILE is written only when the whole profile arrived; '-o -'\n"
    "writes it to stdout. go tool pprof, pprof and Pyroscope's CLI read it.\n"
    "\n"
    "Flags:\n"
    "  -o, --output-file FILE  where to write the profile (required)\n"
    "  --type T                cpu (default), off-cpu, or a full profile type id\n"
    "\n"
    "Examples:\n"
    "  spanprof query pprof 00f067aa0ba902b7 -o span.pb.gz && go tool pprof -top span.pb.gz\n"
    "  spanprof query pprof 00f067aa0ba902b7 --type off-cpu -o - | go tool pprof -http=: -\n"
    "\n" GLOBAL_FLAGS_AT;

static const char folded_help[] =
    "spanprof query folded: a span's profile as folded stacks.\n"
    "\n"
    "Usage:\n"
    "  spanprof query folded SPAN_ID [-o FILE] [--type cpu|off-cpu|TYPE] [flags]\n"
    "\n"
    "SPAN_ID is 16 hex digits. One line per stack, root frame first, frames joined by ';', then\n"
    "a space and the value (nanoseconds for cpu and off-cpu), sorted: what flamegraph.pl,\n"
    "inferno and speedscope read. An empty output is a span with nothing attached.\n"
    "\n"
    "Flags:\n"
    "  -o, --output-file FILE  write to FILE instead of stdout\n"
    "  --type T                cpu (default), off-cpu, or a full profile type id\n"
    "\n"
    "Examples:\n"
    "  spanprof query folded 00f067aa0ba902b7 | flamegraph.pl > span.svg\n"
    "\n" GLOBAL_FLAGS_AT;

static const char help_help[] = "spanprof query help: help for the client or for a command.\n"
                                "\n"
                                "Usage:\n"
                                "  spanprof query help [COMMAND]\n";

typedef int (*run_fn)(const cmdline *cl, conn *c, sp_arena *a, sp_err *err);

static int run_services(const cmdline *cl, conn *c, sp_arena *a, sp_err *err);
static int run_traces(const cmdline *cl, conn *c, sp_arena *a, sp_err *err);
static int run_trace(const cmdline *cl, conn *c, sp_arena *a, sp_err *err);
static int run_top(const cmdline *cl, conn *c, sp_arena *a, sp_err *err);
static int run_profile(const cmdline *cl, conn *c, sp_arena *a, sp_err *err);

struct command {
    const char *name;
    int bit;
    const char *arg; /* the positional argument's name; NULL = none */
    const char *help;
    run_fn run;
};

static const command commands[] = {
    {"services", C_SERVICES, NULL, services_help, run_services},
    {"traces", C_TRACES, NULL, traces_help, run_traces},
    {"trace", C_TRACE, "TRACE_ID", trace_help, run_trace},
    {"top", C_TOP, "SPAN_ID", top_help, run_top},
    {"pprof", C_PPROF, "SPAN_ID", pprof_help, run_profile},
    {"folded", C_FOLDED, "SPAN_ID", folded_help, run_profile},
    {"help", C_HELP, "COMMAND", help_help, NULL},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* ---- the command line ------------------------------------------------------------------------
 */

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int find_flag(const char *name, size_t len, char shortname)
{
    for (int i = 0; i < NFLAGS; i++)
        if (shortname
                ? flag_defs[i].shortname == shortname
                : strlen(flag_defs[i].name) == len && strncmp(flag_defs[i].name, name, len) == 0)
            return i;
    return -1;
}

/* "30s", "1h30m", "500ms", "7d"; a bare number is seconds. ns in *out; -1 when malformed. */
static int parse_duration(const char *s, int64_t *out)
{
    static const struct {
        const char *unit;
        int64_t ns;
    } units[] = {{"ms", 1000000LL},    {"s", SEC_NS},         {"m", 60 * SEC_NS},
                 {"h", 3600 * SEC_NS}, {"d", 86400 * SEC_NS}, {"w", 604800 * SEC_NS}};
    int64_t total = 0;
    if (!*s)
        return -1;
    while (*s) {
        if (!isdigit((unsigned char)*s))
            return -1;
        int64_t v = 0;
        while (isdigit((unsigned char)*s)) {
            if (v > (INT64_MAX - 9) / 10)
                return -1;
            v = v * 10 + (*s++ - '0');
        }
        size_t i = 0, len = 0;
        if (!*s && total == 0) { /* a bare number */
            i = 1;
        } else {
            for (i = 0; i < sizeof units / sizeof units[0]; i++) {
                len = strlen(units[i].unit);
                if (strncmp(s, units[i].unit, len) == 0 && !isalpha((unsigned char)s[len]))
                    break;
            }
            if (i == sizeof units / sizeof units[0])
                return -1;
        }
        if (v > INT64_MAX / units[i].ns || total > INT64_MAX - v * units[i].ns)
            return -1;
        total += v * units[i].ns;
        s += len;
    }
    *out = total;
    return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Flags and positional arguments, in any order (as kubectl and promtool take them). */
static int parse_args(int argc, char **argv, cmdline *cl, sp_err *err)
{
    const char *pos[3];
    int npos = 0, only_args = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_args || a[0] != '-' || !a[1]) {
            if (npos == 3)
                return sp_fail(err, SP_EINVAL, "unexpected argument \"%.100s\"", a);
            pos[npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_args = 1;
            continue;
        }
        const char *value = NULL;
        int id;
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            id = find_flag(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2), 0);
            value = eq ? eq + 1 : NULL;
        } else {
            id = find_flag(NULL, 0, a[1]);
            value = a[2] ? a + 2 : NULL; /* -n5 as -n 5 */
        }
        if (id < 0)
            return sp_fail(err, SP_EINVAL, "unknown flag %.100s", a);
        if (!flag_defs[id].takes_value && value)
            return sp_fail(err, SP_EINVAL, "--%s takes no value", flag_defs[id].name);
        if (flag_defs[id].takes_value && !value) {
            if (i + 1 >= argc)
                return sp_fail(err, SP_EINVAL, "--%s needs a value", flag_defs[id].name);
            value = argv[++i];
        }
        cl->val[id] = value;
        cl->seen[id] = 1;
    }
    if (npos && !(cl->cmd = find_command(pos[0])))
        return sp_fail(err, SP_EINVAL,
                       "unknown command \"%.100s\" (the commands: services, traces, trace, top, "
                       "pprof, folded, help)",
                       pos[0]);
    if (cl->cmd && npos > (cl->cmd->arg ? 2 : 1))
        return sp_fail(err, SP_EINVAL, "'%s' takes %s, not \"%.100s\"", cl->cmd->name,
                       cl->cmd->arg ? "one argument" : "no argument", pos[cl->cmd->arg ? 2 : 1]);
    cl->arg = npos > 1 ? pos[1] : NULL;
    return 0;
}

/* 32 (trace) or 16 (span) hex digits, lowercased into out. */
static int read_id(const char *text, size_t digits, const char *what, char *out, sp_err *err)
{
    size_t n = strlen(text);
    if (n != digits)
        return sp_fail(err, SP_EINVAL, "a %s id is %zu hex digits; \"%.100s\" has %zu", what,
                       digits, text, n);
    int zero = 1;
    for (size_t i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)text[i]))
            return sp_fail(err, SP_EINVAL, "%s id \"%.100s\": '%c' is not a hex digit", what, text,
                           text[i]);
        out[i] = (char)tolower((unsigned char)text[i]);
        zero &= text[i] == '0';
    }
    out[n] = 0;
    if (zero)
        return sp_fail(err, SP_EINVAL, "an all-zero %s id is not valid (W3C Trace Context)", what);
    return 0;
}

/* What the flags say, checked against the command; runs before anything is sent. */
static int check_args(cmdline *cl, sp_err *err)
{
    const command *cmd = cl->cmd;
    for (int i = 0; i < NFLAGS; i++)
        if (cl->seen[i] && !(flag_defs[i].commands & cmd->bit))
            return sp_fail(err, SP_EINVAL, "--%s does not apply to '%s'", flag_defs[i].name,
                           cmd->name);
    if (cmd->arg && !cl->arg && cmd->bit != C_HELP)
        return sp_fail(err, SP_EINVAL, "'%s' needs %s", cmd->name, cmd->arg);
    int rc = !cmd->arg || cmd->bit == C_HELP ? 0
             : cmd->bit == C_TRACE           ? read_id(cl->arg, 32, "trace", cl->id, err)
                                             : read_id(cl->arg, 16, "span", cl->id, err);
    if (rc)
        return rc;
    const char *out = cl->val[F_OUTPUT];
    if (out && strcmp(out, "json") != 0 && strcmp(out, "text") != 0)
        return sp_fail(err, SP_EINVAL, "--output must be text or json, not \"%.100s\"", out);
    cl->json = out && strcmp(out, "json") == 0;
    int64_t ns = 30 * SEC_NS;
    if (cl->val[F_TIMEOUT] && (parse_duration(cl->val[F_TIMEOUT], &ns) || ns < 1000000))
        return sp_fail(err, SP_EINVAL,
                       "--timeout must be a duration of at least 1ms, such as 10s or 2m, not "
                       "\"%.100s\"",
                       cl->val[F_TIMEOUT]);
    cl->timeout_ms = ns / 1000000 > 86400000 ? 86400000 : (long)(ns / 1000000);
    int traces = cmd->bit == C_TRACES;
    cl->limit = 20;
    if (cl->val[F_LIMIT] &&
        parse_long(cl->val[F_LIMIT], traces ? 1 : 0, traces ? 1000 : 1000000000, &cl->limit))
        return sp_fail(err, SP_EINVAL, "--limit must be a number from %d to %s, not \"%.100s\"",
                       traces ? 1 : 0, traces ? "1000" : "1000000000", cl->val[F_LIMIT]);
    if (traces && !cl->val[F_SERVICE])
        return sp_fail(err, SP_EINVAL,
                       "'traces' needs --service NAME ('spanprof query services' lists them)");
    if (traces && !*cl->val[F_SERVICE])
        return sp_fail(err, SP_EINVAL, "--service is empty");
    if (cl->val[F_SINCE] && (cl->val[F_FROM] || cl->val[F_UNTIL]))
        return sp_fail(err, SP_EINVAL, "give --since or --from/--until, not both");
    if (cl->val[F_UNTIL] && !cl->val[F_FROM])
        return sp_fail(err, SP_EINVAL, "--until needs --from");
    if (cl->val[F_SINCE] && (parse_duration(cl->val[F_SINCE], &ns) || ns < SEC_NS))
        return sp_fail(err, SP_EINVAL,
                       "--since must be a duration of at least 1s, such as 15m, 2h or 7d, not "
                       "\"%.100s\"",
                       cl->val[F_SINCE]);
    const char *t = cl->val[F_TYPE] ? cl->val[F_TYPE] : "cpu";
    cl->type_label = t;
    if (strcmp(t, "cpu") == 0)
        cl->type_id = CPU_TYPE;
    else if (strcmp(t, "off-cpu") == 0 || strcmp(t, "offcpu") == 0 || strcmp(t, "off_cpu") == 0)
        cl->type_id = OFF_CPU_TYPE, cl->type_label = "off-cpu";
    else if (strchr(t, ':')) /* a type id; the two above by their short names */
        cl->type_id = t, cl->type_label = strcmp(t, CPU_TYPE) == 0       ? "cpu"
                                          : strcmp(t, OFF_CPU_TYPE) == 0 ? "off-cpu"
                                                                         : t;
    else
        return sp_fail(err, SP_EINVAL,
                       "--type must be cpu, off-cpu or a profile type id such as %s, not "
                       "\"%.100s\"",
                       CPU_TYPE, t);
    const char *sort = cl->val[F_SORT] ? cl->val[F_SORT] : "self";
    if (strcmp(sort, "self") != 0 && strcmp(sort, "total") != 0)
        return sp_fail(err, SP_EINVAL, "--sort must be self or total, not \"%.100s\"", sort);
    cl->sort_total = strcmp(sort, "total") == 0;
    if (cmd->bit == C_PPROF && !cl->val[F_FILE])
        return sp_fail(err, SP_EINVAL,
                       "'pprof' writes a binary file: give -o FILE (or -o - for stdout)");
    if (cl->val[F_FILE] && !*cl->val[F_FILE])
        return sp_fail(err, SP_EINVAL, "-o needs a file name");
    if (cl->val[F_TOKEN_FILE] && cl->val[F_BASIC_FILE])
        return sp_fail(err, SP_EINVAL, "give --token-file or --basic-auth-file, not both");
    return 0;
}

/* ---- the request paths -----------------------------------------------------------------------
 */

/* Percent-encodes s as a URL query value (RFC 3986 unreserved characters kept). */
static int put_enc(sp_buf *o, const char *s)
{
    int rc = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && !rc; p++)
        rc = isalnum(*p) || strchr("-._~", *p) ? sp_buf_append(o, p, 1)
                                               : sp_buf_printf(o, "%%%02X", *p);
    return rc;
}

/* The range flags as query parameters after sep ('?' or '&'): --since as now-<seconds>s, the
 * default an hour. */
static int put_range(sp_buf *o, const cmdline *cl, char sep)
{
    int64_t ns = 3600 * SEC_NS;
    if (cl->val[F_FROM]) {
        int rc = sp_buf_printf(o, "%cfrom=", sep) | put_enc(o, cl->val[F_FROM]);
        if (cl->val[F_UNTIL])
            rc |= PUTS(o, "&until=") | put_enc(o, cl->val[F_UNTIL]);
        return rc;
    }
    if (cl->val[F_SINCE])
        parse_duration(cl->val[F_SINCE], &ns); /* checked in check_args() */
    return sp_buf_printf(o, "%cfrom=now-%" PRId64 "s", sep, (int64_t)(ns / SEC_NS));
}

static int profile_path(const cmdline *cl, const char *id, const char *format, sp_buf *path)
{
    return sp_buf_printf(path, "/api/v1/spans/%s/profile?format=%s&profile_type=", id, format) |
           put_enc(path, cl->type_id) | sp_buf_append(path, "", 1);
}

/* ---- services, traces, trace -----------------------------------------------------------------
 */

static int run_services(const cmdline *cl, conn *c, sp_arena *a, sp_err *err)
{
    sp_buf path;
    sp_buf_init(&path, 0);
    answer ans = {0};
    json_t *doc = NULL;
    int rc =
        PUTS(&path, "/api/v1/services") | put_range(&path, cl, '?') | sp_buf_append(&path, "", 1);
    rc = rc ? sp_fail(err, SP_ENOMEM, "out of memory")
            : get_json(c, (const char *)path.data, &ans, &doc, err);
    const json_t *list = json_object_get(doc, "services");
    if (!rc && !json_is_array(list))
        rc = sp_fail(err, SP_EUNAVAIL, "the answer has no \"services\" list");
    if (!rc && cl->json) {
        print_raw(&ans);
    } else if (!rc) {
        for (size_t i = 0; i < json_array_size(list); i++) {
            const char *s = json_string_value(json_array_get(list, i));
            const char *name = s ? clean(a, s, strlen(s)) : NULL;
            if (name)
                printf("%s\n", name);
        }
        if (!json_array_size(list))
            fprintf(stderr, "no service sent spans in the range\n");
    }
    json_decref(doc);
    sp_buf_free(&ans.body);
    sp_buf_free(&path);
    return rc;
}

static int run_traces(const cmdline *cl, conn *c, sp_arena *a, sp_err *err)
{
    sp_buf path;
    sp_buf_init(&path, 0);
    answer ans = {0};
    json_t *doc = NULL;
    const char *service = cl->val[F_SERVICE];
    int rc = PUTS(&path, "/api/v1/traces?service=") | put_enc(&path, service) |
             sp_buf_printf(&path, "&limit=%ld", cl->limit) | put_range(&path, cl, '&') |
             sp_buf_append(&path, "", 1);
    rc = rc ? sp_fail(err, SP_ENOMEM, "out of memory")
            : get_json(c, (const char *)path.data, &ans, &doc, err);
    const json_t *list = json_object_get(doc, "traces");
    if (!rc && !json_is_array(list))
        rc = sp_fail(err, SP_EUNAVAIL, "the answer has no \"traces\" list");
    if (!rc && cl->json) {
        print_raw(&ans);
    } else if (!rc && !json_array_size(list)) {
        const char *shown = clean(a, service, strlen(service));
        fprintf(stderr, "no trace of service %s in the range\n", shown ? shown : "?");
    } else if (!rc) {
        table t = {.ncols = 7, .right = "llrrrrl", .a = a};
        rc = table_row(&t, "START", "TRACE ID", "DURATION", "SPANS", "CPU", "OFF-CPU", "ROOT");
        for (size_t i = 0; i < json_array_size(list) && !rc; i++) {
            const json_t *tr = json_array_get(list, i);
            char start[64], dur[32], spans[32], cpu[32], off[32], root[1024];
            fmt_time(jint(tr, "start_ns"), "%Y-%m-%d %H:%M:%S", start, sizeof start);
            fmt_dur(jint(tr, "duration_ns"), dur, sizeof dur);
            snprintf(spans, sizeof spans, "%" PRId64, jint(tr, "span_count"));
            fmt_dur(jint(tr, "cpu_time_ns"), cpu, sizeof cpu);
            fmt_dur(jint(tr, "off_cpu_time_ns"), off, sizeof off);
            const char *rs = jstr(tr, "root_service");
            if (*rs && strcmp(rs, service) != 0)
                snprintf(root, sizeof root, "%s (%s)", jstr(tr, "root_name"), rs);
            else
                snprintf(root, sizeof root, "%s", jstr(tr, "root_name"));
            rc = table_row(&t, start, jstr(tr, "trace_id"), dur, spans, cpu, off, root);
        }
        if (rc)
            rc = sp_fail(err, SP_ENOMEM, "out of memory");
        else
            table_print(&t, stdout);
        if (!rc && json_is_true(json_object_get(doc, "truncated")))
            fprintf(stderr, "more traces in the range: raise --limit or narrow the range\n");
    }
    json_decref(doc);
    sp_buf_free(&ans.body);
    sp_buf_free(&path);
    return rc;
}

static int run_trace(const cmdline *cl, conn *c, sp_arena *a, sp_err *err)
{
    const char *id = cl->id;
    char path[64];
    snprintf(path, sizeof path, "/api/v1/traces/%s", id);
    answer ans = {0};
    json_t *doc = NULL;
    int rc = get_json(c, path, &ans, &doc, err);
    const json_t *spans = json_object_get(doc, "spans");
    if (!rc && !json_is_array(spans))
        rc = sp_fail(err, SP_EUNAVAIL, "the answer has no \"spans\" list");
    if (!rc && cl->json)
        print_raw(&ans);
    size_t n = json_array_size(spans);
    size_t *order = !rc && !cl->json ? sp_arena_alloc(a, (n + 1) * sizeof *order) : NULL;
    int *depth = order ? sp_arena_alloc(a, (n + 1) * sizeof *depth) : NULL;
    if (!rc && !cl->json && (!depth || span_tree(spans, a, order, depth)))
        rc = sp_fail(err, SP_ENOMEM, "out of memory");
    if (!rc && !cl->json) {
        int64_t t0 = INT64_MAX, end = INT64_MIN;
        for (size_t i = 0; i < n; i++) {
            const json_t *s = json_array_get(spans, i);
            int64_t st = jint(s, "start_time_unix_nano");
            t0 = st < t0 ? st : t0;
            end = st + jint(s, "duration_ns") > end ? st + jint(s, "duration_ns") : end;
        }
        char when[64], dur[32];
        fmt_time(t0, "%Y-%m-%d %H:%M:%S %Z", when, sizeof when);
        fmt_dur(n ? end - t0 : 0, dur, sizeof dur);
        printf("trace %s: %zu span%s, %s, started %s\n\n", id, n, n == 1 ? "" : "s", dur, when);
        table t = {.ncols = 7, .right = "rrrrlll", .a = a};
        rc = table_row(&t, "START", "DURATION", "CPU", "OFF-CPU", "SPAN ID", "SERVICE", "NAME");
        for (size_t k = 0; k < n && !rc; k++) {
            const json_t *s = json_array_get(spans, order[k]);
            char off[40] = "+", d[32], cpu[32], offcpu[32], name[1024];
            fmt_dur(jint(s, "start_time_unix_nano") - t0, off + 1, sizeof off - 1);
            fmt_dur(jint(s, "duration_ns"), d, sizeof d);
            fmt_dur(jint(s, "cpu_time_ns"), cpu, sizeof cpu);
            fmt_dur(jint(s, "off_cpu_time_ns"), offcpu, sizeof offcpu);
            int ind = depth[order[k]] < 60 ? 2 * depth[order[k]] : 120;
            snprintf(name, sizeof name, "%*s%s", ind, "", jstr(s, "name"));
            rc = table_row(&t, off, d, cpu, offcpu, jstr(s, "span_id"), jstr(s, "service"), name);
        }
        if (rc)
            rc = sp_fail(err, SP_ENOMEM, "out of memory");
        else
            table_print(&t, stdout);
    }
    json_decref(doc);
    sp_buf_free(&ans.body);
    return rc;
}

/* ---- top, pprof, folded ----------------------------------------------------------------------
 */

static void note_unresolved(const answer *ans)
{
    if (ans->unresolved > 0)
        fprintf(stderr,
                "note: %ld native frames are not named yet (their debug files are still being "
                "fetched); ask again later\n",
                ans->unresolved);
}

/* The sample unit of a type id, name:sample_type:sample_unit:period_type:period_unit. */
static void type_unit(const char *id, char *out, size_t cap)
{
    const char *p = strchr(id, ':');
    p = p ? strchr(p + 1, ':') : NULL;
    snprintf(out, cap, "%.*s", p ? (int)strcspn(p + 1, ":") : 0, p ? p + 1 : "");
}

static int run_top(const cmdline *cl, conn *c, sp_arena *a, sp_err *err)
{
    const char *id = cl->id;
    char unit[64];
    int rc = 0;
    sp_buf path;
    sp_buf_init(&path, 0);
    answer ans = {0};
    if (profile_path(cl, id, "folded", &path))
        rc = sp_fail(err, SP_ENOMEM, "out of memory");
    if (!rc)
        rc = http_get(c, (const char *)path.data, &ans, err);
    funcs f = {.a = a};
    int64_t sum = 0;
    size_t nstacks = 0;
    if (!rc)
        rc = top_from_folded((char *)ans.body.data, ans.body.len, &f, &sum, &nstacks, err);
    type_unit(cl->type_id, unit, sizeof unit);
    int ns = strcmp(unit, "nanoseconds") == 0;
    size_t shown = cl->limit && (size_t)cl->limit < f.n ? (size_t)cl->limit : f.n;
    if (!rc) {
        if (f.n)
            qsort_r(f.v, f.n, sizeof *f.v, func_cmp, (void *)&cl->sort_total);
        note_unresolved(&ans);
    }
    if (!rc && cl->json) {
        if (print_top_json(cl, id, unit, &f, shown, sum))
            rc = sp_fail(err, SP_ENOMEM, "out of memory");
    } else if (!rc && !f.n) {
        fprintf(stderr, "span %s has no %s samples\n", id, cl->type_label);
    } else if (!rc) {
        char total[32];
        fmt_value(sum, ns, total, sizeof total);
        printf("span %s, %s: %s in %zu stack%s, %zu function%s", id, cl->type_label, total, nstacks,
               nstacks == 1 ? "" : "s", f.n, f.n == 1 ? "" : "s");
        if (shown < f.n)
            printf(", the top %zu by %s", shown, cl->sort_total ? "total" : "self");
        printf("\n\n");
        table t = {.ncols = 5, .right = "rrrrl", .a = a};
        rc = table_row(&t, "SELF", "SELF%", "TOTAL", "TOTAL%", "FUNCTION");
        for (size_t i = 0; i < shown && !rc; i++) {
            char self[32], selfp[16], tot[32], totp[16];
            fmt_value(f.v[i].self, ns, self, sizeof self);
            fmt_value(f.v[i].total, ns, tot, sizeof tot);
            snprintf(selfp, sizeof selfp, "%.1f%%", sum ? 100.0 * f.v[i].self / sum : 0.0);
            snprintf(totp, sizeof totp, "%.1f%%", sum ? 100.0 * f.v[i].total / sum : 0.0);
            const char *name = sp_arena_strndup(a, f.v[i].name, f.v[i].len);
            rc = !name || table_row(&t, self, selfp, tot, totp, name);
        }
        if (rc)
            rc = sp_fail(err, SP_ENOMEM, "out of memory");
        else
            table_print(&t, stdout);
    }
    sp_buf_free(&ans.body);
    sp_buf_free(&path);
    return rc;
}

/* pprof and folded: the server's answer, written as it came. */
static int run_profile(const cmdline *cl, conn *c, sp_arena *a, sp_err *err)
{
    int pprof = cl->cmd->bit == C_PPROF;
    const char *id = cl->id;
    int rc;
    const char *file = cl->val[F_FILE];
    char *tmp = NULL;
    FILE *f = NULL;
    if ((rc = out_open(file, a, &tmp, &f, err)) != 0)
        return rc;
    sp_buf path;
    sp_buf_init(&path, 0);
    answer ans = {0};
    if (profile_path(cl, id, pprof ? "pprof" : "folded", &path))
        rc = sp_fail(err, SP_ENOMEM, "out of memory");
    if (!rc)
        rc = http_get(c, (const char *)path.data, &ans, err);
    if (!rc && fwrite(ans.body.data, 1, ans.body.len, f) != ans.body.len)
        rc = sp_fail(err, SP_EINTERNAL, "cannot write %s: %s", tmp ? file : "stdout",
                     strerror(errno));
    int crc = out_close(file, tmp, f, !rc, err);
    rc = rc ? rc : crc;
    if (!rc) {
        note_unresolved(&ans);
        if (tmp)
            fprintf(stderr, "saved the %s profile of span %s in %s (%zu bytes)\n", cl->type_label,
                    id, file, ans.body.len);
        if (!ans.body.len && !pprof)
            fprintf(stderr, "span %s has no %s samples\n", id, cl->type_label);
    }
    sp_buf_free(&ans.body);
    sp_buf_free(&path);
    return rc;
}

/* ---- the entry point -------------------------------------------------------------------------
 */

/* The one table from what failed to the exit status (invariant 3). */
static int exit_status(int code)
{
    switch (code) {
    case 0:
        return CLIENT_EXIT_OK;
    case SP_ENOTFOUND:
        return CLIENT_EXIT_NOT_FOUND;
    case SP_EINVAL:
        return CLIENT_EXIT_USAGE;
    case SP_EAUTH:
        return CLIENT_EXIT_AUTH;
    default: /* SP_EUNAVAIL, SP_EDEADLINE, SP_ETOOBIG, SP_ENOMEM, SP_EINTERNAL */
        return CLIENT_EXIT_SERVER;
    }
}

static int usage_error(const cmdline *cl, const sp_err *err)
{
    fprintf(stderr, "spanprof query: %s\n", err->msg);
    if (cl->cmd && cl->cmd->bit != C_HELP)
        fprintf(stderr, "Run 'spanprof query %s --help' for usage.\n", cl->cmd->name);
    else
        fprintf(stderr, SEE_HELP "\n");
    return CLIENT_EXIT_USAGE;
}

int client_main(int argc, char **argv)
{
    cmdline cl = {0};
    sp_err err = {0};
    if (parse_args(argc, argv, &cl, &err))
        return usage_error(&cl, &err);
    if (cl.cmd && cl.cmd->bit == C_HELP) {
        const command *about = cl.arg ? find_command(cl.arg) : NULL;
        if (cl.arg && !about) {
            sp_fail(&err, SP_EINVAL, "no command \"%.100s\" to help with", cl.arg);
            return usage_error(&cl, &err);
        }
        fputs(about ? about->help : main_help, stdout);
        return CLIENT_EXIT_OK;
    }
    if (cl.seen[F_HELP] || !cl.cmd) {
        fputs(cl.cmd ? cl.cmd->help : main_help, cl.cmd || cl.seen[F_HELP] ? stdout : stderr);
        return cl.seen[F_HELP] ? CLIENT_EXIT_OK : CLIENT_EXIT_USAGE;
    }
    if (check_args(&cl, &err))
        return usage_error(&cl, &err);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    conn c = {0};
    sp_arena *a = sp_arena_new(0);
    int rc = a ? conn_open(&c, &cl, &err) : sp_fail(&err, SP_ENOMEM, "out of memory");
    if (rc == SP_EINVAL) {
        conn_close(&c);
        sp_arena_free(a);
        curl_global_cleanup();
        return usage_error(&cl, &err);
    }
    if (!rc)
        rc = cl.cmd->run(&cl, &c, a, &err);
    if (!rc && fflush(stdout) != 0)
        rc = sp_fail(&err, SP_EINTERNAL, "cannot write stdout: %s", strerror(errno));
    if (rc)
        fprintf(stderr, "spanprof query: %s\n", err.msg);
    conn_close(&c);
    sp_arena_free(a);
    curl_global_cleanup();
    return exit_status(rc);
}

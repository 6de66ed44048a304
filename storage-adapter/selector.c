/* Label selectors: parsing (store_parse_selector) and evaluation (match.h). */
#include "match.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *s, *p;
    sp_arena *a;
    sp_err *err;
} parser;

static void skip_ws(parser *ps)
{
    while (*ps->p && isspace((unsigned char)*ps->p))
        ps->p++;
}

static int perr(parser *ps, const char *what)
{
    return sp_fail(ps->err, SP_EINVAL, "label selector \"%s\": %s at offset %d", ps->s, what,
                   (int)(ps->p - ps->s));
}

/* A quoted string: "..." or '...' with Go/PromQL escapes, or `...` raw. */
static int parse_quoted(parser *ps, const char **out)
{
    char q = *ps->p;
    if (q != '"' && q != '\'' && q != '`')
        return perr(ps, "expected a quoted string");
    ps->p++;
    /* The string's raw length first (what it decodes to is never longer): room for the rest of
     * the text per string made a selector of n strings cost n times its length (fuzz_selector:
     * 222 matchers in 4.5 KB needed over 1 MiB of the request's arena). */
    const char *end = ps->p;
    while (*end && *end != q)
        end += *end == '\\' && q != '`' && end[1] ? 2 : 1;
    char *buf = sp_arena_alloc(ps->a, (size_t)(end - ps->p) + 1);
    if (!buf)
        return sp_fail(ps->err, SP_ETOOBIG, "label selector too large for the request budget");
    size_t n = 0;
    for (;;) {
        char c = *ps->p;
        if (!c)
            return perr(ps, "unterminated string");
        ps->p++;
        if (c == q)
            break;
        if (c == '\\' && q != '`') {
            char e = *ps->p;
            if (!e)
                return perr(ps, "unterminated escape");
            ps->p++;
            switch (e) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case '\\':
                c = '\\';
                break;
            case '"':
                c = '"';
                break;
            case '\'':
                c = '\'';
                break;
            default:
                /* Keep unknown escapes (regex classes such as \. ) as written. */
                buf[n++] = '\\';
                c = e;
                break;
            }
        }
        buf[n++] = c;
    }
    buf[n] = 0;
    *out = buf;
    return 0;
}

static int is_name_start(char c)
{
    return isalpha((unsigned char)c) || c == '_';
}

static int is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.';
}

static int parse_name(parser *ps, const char **out)
{
    if (*ps->p == '"' || *ps->p == '\'' || *ps->p == '`')
        return parse_quoted(ps, out);
    if (!is_name_start(*ps->p))
        return perr(ps, "expected a label name");
    const char *start = ps->p;
    while (is_name_char(*ps->p))
        ps->p++;
    *out = sp_arena_strndup(ps->a, start, (size_t)(ps->p - start));
    if (!*out)
        return sp_fail(ps->err, SP_ETOOBIG, "label selector too large for the request budget");
    return 0;
}

/* matcher (',' matcher)* [','] up to `close` (or the end when close is 0). */
static int parse_list(parser *ps, char close, store_selector *out)
{
    size_t cap = 0;
    for (const char *c = ps->p; *c; c++)
        cap += *c == ',';
    cap += 1;
    out->matchers = sp_arena_calloc(ps->a, cap, sizeof *out->matchers);
    if (!out->matchers)
        return sp_fail(ps->err, SP_ETOOBIG, "label selector too large for the request budget");
    for (;;) {
        skip_ws(ps);
        if (*ps->p == close)
            break;
        if (!*ps->p)
            return close ? perr(ps, "missing '}'") : 0;
        store_matcher *m = &out->matchers[out->nmatchers];
        int rc = parse_name(ps, &m->name);
        if (rc)
            return rc;
        skip_ws(ps);
        if (ps->p[0] == '=' && ps->p[1] == '~') {
            m->op = STORE_MATCH_RE;
            ps->p += 2;
        } else if (ps->p[0] == '!' && ps->p[1] == '~') {
            m->op = STORE_MATCH_NRE;
            ps->p += 2;
        } else if (ps->p[0] == '!' && ps->p[1] == '=') {
            m->op = STORE_MATCH_NEQ;
            ps->p += 2;
        } else if (ps->p[0] == '=') {
            m->op = STORE_MATCH_EQ;
            ps->p += 1;
        } else {
            return perr(ps, "expected one of = != =~ !~");
        }
        skip_ws(ps);
        if ((rc = parse_quoted(ps, &m->value)))
            return rc;
        if (out->nmatchers >= cap)
            return perr(ps, "too many matchers");
        out->nmatchers++;
        skip_ws(ps);
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == close || !*ps->p)
            continue;
        return perr(ps, "expected ',' or the end of the selector");
    }
    if (close)
        ps->p++;
    return 0;
}

/* The '{' that opens the matcher list: the first one outside quoted strings, since a list without
 * braces may quote values that contain one (span_name="GET /users/{id}"). */
static const char *find_brace(const char *p)
{
    for (char q = 0; *p; p++) {
        if (q) {
            if (*p == '\\' && q != '`' && p[1])
                p++;
            else if (*p == q)
                q = 0;
        } else if (*p == '"' || *p == '\'' || *p == '`') {
            q = *p;
        } else if (*p == '{') {
            return p;
        }
    }
    return NULL;
}

int store_parse_selector(const char *text, sp_arena *a, store_selector *out, sp_err *err)
{
    if (!out || !a)
        return sp_fail(err, SP_EINTERNAL, "store_parse_selector: no arena or output");
    memset(out, 0, sizeof *out);
    if (!text)
        return 0;
    parser ps = {.s = text, .p = text, .a = a, .err = err};
    skip_ws(&ps);
    const char *brace = find_brace(ps.p);
    if (!brace) {
        if (!*ps.p)
            return 0;
        /* Grafana custom queries: `method="x"` without braces; a bare word is a metric name. */
        if (strpbrk(ps.p, "=~")) {
            int rc = parse_list(&ps, 0, out);
            return rc;
        }
        const char *end = ps.p + strlen(ps.p);
        while (end > ps.p && isspace((unsigned char)end[-1]))
            end--;
        out->type_id = sp_arena_strndup(a, ps.p, (size_t)(end - ps.p));
        return out->type_id ? 0 : sp_fail(err, SP_ETOOBIG, "label selector too large");
    }
    if (brace > ps.p) {
        const char *end = brace;
        while (end > ps.p && isspace((unsigned char)end[-1]))
            end--;
        for (const char *c = ps.p; c < end; c++)
            if (isspace((unsigned char)*c) || *c == '"' || *c == '=')
                return perr(&ps, "unexpected text before '{'");
        out->type_id = sp_arena_strndup(a, ps.p, (size_t)(end - ps.p));
        if (!out->type_id)
            return sp_fail(err, SP_ETOOBIG, "label selector too large");
    }
    ps.p = brace + 1;
    int rc = parse_list(&ps, '}', out);
    if (rc)
        return rc;
    skip_ws(&ps);
    if (*ps.p)
        return perr(&ps, "unexpected text after '}'");
    return 0;
}

/* ---- evaluation --------------------------------------------------------------------------------
 */

/* Budgets for label regexes as glibc's regcomp() would write them out (see regex_check): 4096
 * characters of `a*` already cost some 70 MB of epsilon closures. */
#define REGEX_MAX_WEIGHT    4096
#define SELECTOR_MAX_WEIGHT 8192 /* all the regexes of one selector */
/* Copies of things that can match "" a regex may have once its counts are written out: each
 * copy's epsilon closure reaches every later one, so regcomp's memory grows with the square of
 * them ((a|){1000}: 363 MB and 1.6 s; (a|){256}: under 100 MB). */
#define REGEX_MAX_NULL_COPIES 256

enum { RE_OK, RE_TOO_LARGE, RE_BACKREF, RE_EMPTY_LOOP, RE_UNBALANCED, RE_NULL_REPEAT };

/* Parses an interval {lo}, {lo,}, {lo,hi} or {,hi} at p; 0 when p does not start one. */
static int interval(const char *p, size_t *lo, size_t *hi, int *unbounded, const char **end)
{
    const char *q = p + 1;
    *lo = *hi = 0;
    for (; *q >= '0' && *q <= '9'; q++)
        *lo = *lo > REGEX_MAX_WEIGHT ? *lo : *lo * 10 + (size_t)(*q - '0');
    *hi = *lo;
    *unbounded = 0;
    if (*q == ',') {
        q++;
        *unbounded = !(*q >= '0' && *q <= '9');
        for (*hi = 0; *q >= '0' && *q <= '9'; q++)
            *hi = *hi > REGEX_MAX_WEIGHT ? *hi : *hi * 10 + (size_t)(*q - '0');
    }
    *end = q;
    return q > p + 1 && *q == '}';
}

/* Checks re against what glibc's regcomp()/regexec() cannot do in bounded time and memory:
 * - RE_TOO_LARGE: its size with every {m,n} and + written out is past REGEX_MAX_WEIGHT (regcomp
 *   copies the operand max(m,n) times and twice for +, nested counts multiply: 27 stacked +
 *   make 2^27 copies); *weight is that size otherwise.
 * - RE_BACKREF: a back-reference (\1 to \9), a GNU extension to POSIX EREs that glibc matches by
 *   backtracking: `(a*)(a*)(a*)\2\3\4x` takes minutes on one 256-character label value.
 * - RE_EMPTY_LOOP: *, + or {m,} over something that can match the empty string, such as (a*)*,
 *   (a?|b)+ or a**: regcomp's epsilon closures take exponential time in how many there are
 *   (25 times `((a)*)*` take half a minute).
 * - RE_UNBALANCED: a ')' without its '(': the regex is compiled inside ^( )$, so `a){1000}|(b`
 *   would close, repeat and unanchor that group instead of failing.
 * - RE_NULL_REPEAT: a count of something that can match "": more than REGEX_MAX_NULL_COPIES
 *   such copies written out, or any count past 1 of a group with two or more alternatives that
 *   can (fuzz_selector: (x|||||){100} took 4 GB and 11 s in regcomp, (a?|b?){100} 1.1 GB).
 * RE2, which Prometheus and Pyroscope use, has no back-references and refuses a**, unbalanced
 * parentheses and counts past 1000; (a*)* it rewrites as a*, as users can. */
static int regex_check(const char *re, size_t *weight)
{
    enum { MAX_DEPTH = 1000 }; /* RE2's nesting limit */
    /* Per open group: its expanded size so far; its last item (a character, a bracket expression
     * or a group), which a following repetition applies to (size 0: none yet); whether that item
     * can match "", whether the rest of the current alternative can, and an earlier one could. */
    /* Also: the copies of things that can match "" in it (nulls) and in its last item
     * (last_nulls), the alternatives so far that can (null_alts), and those of the last item
     * when it is a group (last_null_alts). */
    struct {
        size_t size, last, nulls, last_nulls;
        unsigned null_alts, last_null_alts;
        unsigned char last_null, seq_null, alt_null;
    } st[MAX_DEPTH + 1];
    size_t d = 0;
    memset(&st[0], 0, sizeof st[0]);
    st[0].last_null = st[0].seq_null = 1;
    for (const char *p = re; *p; p++) {
        size_t item = 1, lo = 1, hi = 1;
        int null = 0, unbounded = 0;
        const char *end = p;
        if (st[d].last && (*p == '*' || *p == '+' || *p == '?' ||
                           (*p == '{' && interval(p, &lo, &hi, &unbounded, &end)))) {
            if ((*p == '*' || *p == '+' || unbounded) && st[d].last_null)
                return RE_EMPTY_LOOP;
            /* Copies regcomp makes of the operand: a+ is aa*, a{2,} is aaa*. */
            size_t k = *p == '+' ? 2 : unbounded ? lo + 1 : lo > hi ? lo : hi;
            if (k > REGEX_MAX_WEIGHT)
                return RE_TOO_LARGE;
            st[d].size -= st[d].last;
            st[d].last = st[d].last * (k ? k : 1) + (size_t)(end - p) + 1;
            st[d].size += st[d].last;
            if (st[d].size > REGEX_MAX_WEIGHT)
                return RE_TOO_LARGE;
            if (st[d].last_null && k > 1 && st[d].last_null_alts > 1)
                return RE_NULL_REPEAT;
            size_t copies = st[d].last_nulls ? st[d].last_nulls : st[d].last_null;
            st[d].nulls -= st[d].last_nulls;
            st[d].last_nulls = copies * (k ? k : 1);
            st[d].nulls += st[d].last_nulls;
            if (st[d].nulls > REGEX_MAX_NULL_COPIES)
                return RE_NULL_REPEAT;
            if (*p == '*' || *p == '?' || (*p == '{' && lo == 0))
                st[d].last_null = 1;
            p = end;
            continue;
        }
        if (*p == '(') {
            if (d == MAX_DEPTH)
                return RE_TOO_LARGE;
            d++;
            memset(&st[d], 0, sizeof st[d]);
            st[d].last_null = st[d].seq_null = 1;
            continue;
        }
        size_t nulls = 0; /* of the item read below */
        unsigned null_alts = 0;
        if (*p == '|') {
            st[d].null_alts += st[d].seq_null && st[d].last_null;
            st[d].alt_null |= st[d].seq_null && st[d].last_null;
            st[d].seq_null = st[d].last_null = 1;
            st[d].last = 0;
            st[d].size += 1;
            continue;
        }
        if (*p == ')') {
            if (d == 0)
                return RE_UNBALANCED;
            item = st[d].size + 2;
            null = st[d].alt_null || (st[d].seq_null && st[d].last_null);
            null_alts = st[d].null_alts + (st[d].seq_null && st[d].last_null);
            nulls = st[d].nulls;
            d--;
        } else if (*p == '^' || *p == '$') {
            null = 1; /* anchors match no character */
        } else if (*p == '\\' && p[1]) {
            p++;
            if (*p >= '1' && *p <= '9')
                return RE_BACKREF;
            null = strchr("bB<>`'", *p) != NULL; /* GNU word and buffer anchors */
        } else if (*p == '[') { /* a bracket expression: ']' first is a member, [:class:] too */
            const char *q = p + 1;
            if (*q == '^')
                q++;
            if (*q == ']')
                q++;
            while (*q && *q != ']') {
                if (*q == '[' && (q[1] == ':' || q[1] == '.' || q[1] == '=')) {
                    const char *close = strchr(q + 2, q[1]);
                    while (close && close[1] != ']')
                        close = strchr(close + 1, q[1]);
                    q = close ? close + 2 : q + 1;
                } else {
                    q++;
                }
            }
            item = (size_t)(q - p) + 1;
            p = *q ? q : q - 1;
        }
        st[d].seq_null = st[d].seq_null && st[d].last_null;
        st[d].last = item;
        st[d].last_null = (unsigned char)null;
        st[d].last_nulls = nulls;
        st[d].last_null_alts = null_alts;
        st[d].nulls += nulls;
        st[d].size += item;
        if (st[d].size > REGEX_MAX_WEIGHT)
            return RE_TOO_LARGE;
    }
    size_t total = st[0].size;
    while (d > 0) /* an unclosed '(': regcomp() says so */
        total += st[d--].size;
    *weight = total;
    return RE_OK;
}

int store_match_compile(store_match *mm, const store_matcher *m, size_t n, sp_err *err)
{
    memset(mm, 0, sizeof *mm);
    mm->m = m;
    mm->n = n;
    if (!n)
        return 0;
    size_t weight = 0;
    mm->re = calloc(n, sizeof *mm->re);
    mm->compiled = calloc(n, 1);
    if (!mm->re || !mm->compiled) {
        store_match_free(mm);
        return sp_fail(err, SP_ENOMEM, "out of memory compiling label matchers");
    }
    for (size_t i = 0; i < n; i++) {
        if (!m[i].name || !m[i].value) {
            store_match_free(mm);
            return sp_fail(err, SP_EINVAL, "label matcher %zu has no name or value", i);
        }
        if (m[i].op != STORE_MATCH_RE && m[i].op != STORE_MATCH_NRE) {
            if (m[i].op != STORE_MATCH_EQ && m[i].op != STORE_MATCH_NEQ) {
                store_match_free(mm);
                return sp_fail(err, SP_EINVAL, "label matcher %zu: unknown operator %d", i,
                               m[i].op);
            }
            continue;
        }
        size_t w = 0;
        int why = regex_check(m[i].value, &w);
        weight += w;
        if (why == RE_OK && weight > SELECTOR_MAX_WEIGHT)
            why = RE_TOO_LARGE;
        if (why == RE_TOO_LARGE) {
            store_match_free(mm);
            return sp_fail(err, SP_EINVAL,
                           "label matcher %s=~\"%.64s\": regular expression too large (at most %d "
                           "characters with repetitions such as {1000} written out, %d for all the "
                           "regexes of a selector)",
                           m[i].name, m[i].value, REGEX_MAX_WEIGHT, SELECTOR_MAX_WEIGHT);
        }
        if (why != RE_OK) {
            store_match_free(mm);
            return sp_fail(err, SP_EINVAL, "label matcher %s=~\"%.64s\": regular expression %s",
                           m[i].name, m[i].value,
                           why == RE_UNBALANCED ? "has unbalanced parentheses"
                           : why == RE_NULL_REPEAT
                               ? "with a count of something that can match the empty string more "
                                 "than once, such as (a?|b?){10} or (a|){1000}, is not supported "
                                 "(glibc's regcomp needs memory that grows with the square of the "
                                 "count): write (a|b){0,10} or a{0,1000}"
                           : why == RE_BACKREF
                               ? "with back-references (\\1 to \\9) is not supported (nor is it "
                                 "in Prometheus and Pyroscope)"
                               : "with a repetition (*, + or {m,}) of something that can match "
                                 "the empty string, such as (a*)* or (a|b?)+, is not supported: "
                                 "write a* or (a|b)*");
        }
        size_t len = strlen(m[i].value);
        char *anchored = malloc(len + 5);
        if (!anchored) {
            store_match_free(mm);
            return sp_fail(err, SP_ENOMEM, "out of memory compiling label matchers");
        }
        memcpy(anchored, "^(", 2);
        memcpy(anchored + 2, m[i].value, len);
        memcpy(anchored + 2 + len, ")$", 3);
        int rc = regcomp(&mm->re[i], anchored, REG_EXTENDED | REG_NOSUB);
        free(anchored);
        if (rc != 0) {
            char msg[128];
            regerror(rc, &mm->re[i], msg, sizeof msg);
            store_match_free(mm);
            return sp_fail(err, SP_EINVAL, "label matcher %s=~\"%s\": bad regular expression: %s",
                           m[i].name, m[i].value, msg);
        }
        mm->compiled[i] = 1;
    }
    return 0;
}

void store_match_free(store_match *mm)
{
    if (mm->re && mm->compiled)
        for (size_t i = 0; i < mm->n; i++)
            if (mm->compiled[i])
                regfree(&mm->re[i]);
    free(mm->re);
    free(mm->compiled);
    memset(mm, 0, sizeof *mm);
}

int store_match_eval(const store_match *mm, store_label_fn get, void *ctx)
{
    for (size_t i = 0; i < mm->n; i++) {
        const store_matcher *m = &mm->m[i];
        const char *v = get(ctx, m->name);
        if (!v)
            v = "";
        int ok;
        switch (m->op) {
        case STORE_MATCH_EQ:
            ok = strcmp(v, m->value) == 0;
            break;
        case STORE_MATCH_NEQ:
            ok = strcmp(v, m->value) != 0;
            break;
        case STORE_MATCH_RE:
            ok = regexec(&mm->re[i], v, 0, NULL, 0) == 0;
            break;
        default:
            ok = regexec(&mm->re[i], v, 0, NULL, 0) != 0;
            break;
        }
        if (!ok)
            return 0;
    }
    return 1;
}

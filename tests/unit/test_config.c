/* app/config: settings from flags, SPANPROF_* variables and a YAML file (--config) through one
 * table. Guards config.c's invariants: 1 (precedence flag > environment > file > default),
 * 2 (one name per setting in all three sources, and --help lists it), 3 (every refusal names the
 * flag, the variable, or the file with line and key), 4 (bounded file, no aliases). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "app/config.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static char dir[64];

/* Each test: its own temp dir, and no SPANPROF_* variable from whoever runs the tests. */
static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/spanprof-test-config-XXXXXX");
    assert_non_null(mkdtemp(dir));
    for (;;) {
        char name[256] = "";
        for (char **e = environ; *e && !name[0]; e++)
            if (strncmp(*e, "SPANPROF_", 9) == 0)
                snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
        if (!name[0])
            break;
        unsetenv(name);
    }
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    (void)state;
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* dir/name holding text (len bytes; -1 = strlen); returns the path (kept until the next call
 * with the same slot). */
static const char *write_file_n(int slot, const char *name, const char *text, long len)
{
    static char paths[4][128];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", dir, name);
    FILE *f = fopen(paths[slot], "wb");
    assert_non_null(f);
    size_t n = len < 0 ? strlen(text) : (size_t)len;
    assert_int_equal(fwrite(text, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return paths[slot];
}

static const char *write_file(const char *text)
{
    return write_file_n(0, "spanprof.yaml", text, -1);
}

/* argv: "spanprof" then the strings up to NULL. */
static int parse_v(app_config *c, sp_err *err, const char **args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "spanprof";
    while (*args && argc < 31)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    app_config_defaults(c);
    memset(err, 0, sizeof *err);
    return app_config_parse(c, argc, argv, err);
}
#define PARSE(c, err, ...) parse_v(c, err, (const char *[]){__VA_ARGS__, NULL})

static void ok(app_config *c, const char **args)
{
    sp_err err;
    int rc = parse_v(c, &err, args);
    if (rc)
        fail_msg("refused: %s", err.msg);
}
#define OK(c, ...) ok(c, (const char *[]){__VA_ARGS__, NULL})

/* Refused with SP_EINVAL and a message holding every string in want (NULL-terminated). */
static void refused_v(const char **args, const char **want)
{
    app_config c;
    sp_err err;
    int rc = parse_v(&c, &err, args);
    if (rc != SP_EINVAL)
        fail_msg("accepted (rc %d), expected a refusal naming %s", rc, want[0]);
    for (; *want; want++)
        if (!strstr(err.msg, *want))
            fail_msg("the message does not say \"%s\": %s", *want, err.msg);
}
#define WANT(...)          ((const char *[]){__VA_ARGS__, NULL})
#define REFUSED(args, ...) refused_v(args, WANT(__VA_ARGS__))

/* The file refused with a message naming the file, "line:column" and the key. */
static void file_refused(const char *yaml, const char *at, const char *key, const char *what)
{
    const char *path = write_file(yaml);
    char where[192];
    snprintf(where, sizeof where, "%s:%s: ", path, at);
    REFUSED(WANT("--config", path), where, key, what);
}

static void defaults_without_any_source(void **state)
{
    (void)state;
    app_config c;
    OK(&c, NULL);
    assert_null(c.config_file);
    assert_string_equal(c.data_dir, "./data");
    assert_string_equal(c.srv.http_addr, "0.0.0.0:4040");
    assert_int_equal(c.retention_ms, 168LL * 3600 * 1000);
    assert_int_equal(c.srv.workers, 2);
    assert_int_equal(c.srv.multitenancy_required, 0);
    assert_string_equal(c.store, "sqlite");
}

static void flag_beats_environment_beats_file_beats_default(void **state)
{
    (void)state;
    const char *path = write_file("# every level sets something\n"
                                  "retention: 72h\n"
                                  "data-dir: /from/file\n"
                                  "workers: 3\n"
                                  "durability: full\n");
    setenv("SPANPROF_RETENTION", "48h", 1);
    setenv("SPANPROF_DATA_DIR", "/from/env", 1);
    setenv("SPANPROF_QUEUE_SIZE", "17", 1);
    app_config c;
    OK(&c, "--config", path, "--retention", "24h", "--queue-size=9");
    assert_string_equal(c.config_file, path);
    assert_int_equal(c.retention_ms, 24LL * 3600 * 1000); /* flag over env over file */
    assert_int_equal(c.srv.queue_size, 9);                /* flag over env */
    assert_string_equal(c.data_dir, "/from/env");         /* env over file */
    assert_int_equal(c.srv.workers, 3);                   /* file over default */
    assert_string_equal(c.durability, "full");
    assert_string_equal(c.srv.http_addr, "0.0.0.0:4040"); /* default */
}

static void config_file_from_environment_unless_a_flag_names_another(void **state)
{
    (void)state;
    const char *a = write_file_n(1, "a.yaml", "workers: 3\n", -1);
    const char *b = write_file_n(2, "b.yaml", "workers: 4\n", -1);
    setenv("SPANPROF_CONFIG", a, 1);
    app_config c;
    OK(&c, NULL);
    assert_string_equal(c.config_file, a);
    assert_int_equal(c.srv.workers, 3);
    OK(&c, "--config", b);
    assert_string_equal(c.config_file, b);
    assert_int_equal(c.srv.workers, 4);
    /* --config "" reads no file at all, whatever SPANPROF_CONFIG says */
    OK(&c, "--config=");
    assert_null(c.config_file);
    assert_int_equal(c.srv.workers, 2);
}

static void file_reads_every_value_type(void **state)
{
    (void)state;
    const char *path = write_file("data_dir: /var/lib/spanprof   # underscores work too\n"
                                  "http-addr: \"127.0.0.1:4040\"\n"
                                  "grpc-addr: '127.0.0.1:4317'\n"
                                  "max-recv-msg-size: 32MiB\n"
                                  "max-inflight-bytes: 1048576\n"
                                  "outbox-max-bytes: 2g\n"
                                  "workers: 5\n"
                                  "retention: 1h30m\n"
                                  "shutdown-timeout: 500ms\n"
                                  "idle-timeout: 250\n"
                                  "symbols-retry: 1d\n"
                                  "multitenancy-required: true\n"
                                  "tls:\n"
                                  "  cert: /etc/tls/cert.pem\n"
                                  "  key: /etc/tls/key.pem\n"
                                  "pyroscope:\n"
                                  "  url: http://pyroscope:4040\n"
                                  "  basic-auth: {user: alice, password_file: /run/secrets/pw}\n"
                                  "store: sqlite,pyroscope\n"
                                  "traces.forward.to: http://tempo:4318/v1/traces\n");
    app_config c;
    OK(&c, "--config", path);
    assert_string_equal(c.data_dir, "/var/lib/spanprof");
    assert_string_equal(c.srv.http_addr, "127.0.0.1:4040");
    assert_string_equal(c.srv.grpc_addr, "127.0.0.1:4317");
    assert_int_equal(c.srv.max_recv_msg_size, 32u << 20);
    assert_int_equal(c.srv.max_inflight_bytes, 1048576);
    assert_int_equal(c.outbox_max_bytes, (size_t)2 << 30);
    assert_int_equal(c.srv.workers, 5);
    assert_int_equal(c.retention_ms, 90LL * 60 * 1000);
    assert_int_equal(c.srv.shutdown_timeout_ms, 500);
    assert_int_equal(c.srv.idle_timeout_ms, 250); /* a bare number is milliseconds */
    assert_int_equal(c.symbols_retry_ms, 86400000LL);
    assert_int_equal(c.srv.multitenancy_required, 1);
    assert_string_equal(c.srv.tls_cert, "/etc/tls/cert.pem");
    assert_string_equal(c.srv.tls_key, "/etc/tls/key.pem");
    assert_string_equal(c.pyroscope_url, "http://pyroscope:4040");
    assert_string_equal(c.pyroscope_basic_auth_user, "alice");
    assert_string_equal(c.pyroscope_basic_auth_password_file, "/run/secrets/pw");
    assert_string_equal(c.traces_forward_to, "http://tempo:4318/v1/traces");
}

static void empty_file_and_comments_only_set_nothing(void **state)
{
    (void)state;
    const char *texts[] = {"", "# nothing here\n", "---\n", "~\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        app_config c;
        OK(&c, "--config", write_file(texts[i]));
        assert_string_equal(c.data_dir, "./data");
    }
}

static void environment_reads_every_value_type(void **state)
{
    (void)state;
    setenv("SPANPROF_HTTP_ADDR", "127.0.0.1:9999", 1);
    setenv("SPANPROF_MAX_RECV_MSG_SIZE", "8MiB", 1);
    setenv("SPANPROF_WORKERS", "7", 1);
    setenv("SPANPROF_CORRELATION_WINDOW", "5m", 1);
    setenv("SPANPROF_MULTITENANCY_REQUIRED", "1", 1);
    setenv("SPANPROF_INGEST_AUTH_TOKEN_FILE", "/run/secrets/tokens", 1);
    app_config c;
    OK(&c, NULL);
    assert_string_equal(c.srv.http_addr, "127.0.0.1:9999");
    assert_int_equal(c.srv.max_recv_msg_size, 8u << 20);
    assert_int_equal(c.srv.workers, 7);
    assert_int_equal(c.correlation_window_ms, 300000);
    assert_int_equal(c.srv.multitenancy_required, 1);
    assert_string_equal(c.srv.ingest_auth_token_file, "/run/secrets/tokens");
    setenv("SPANPROF_MULTITENANCY_REQUIRED", "false", 1);
    OK(&c, NULL);
    assert_int_equal(c.srv.multitenancy_required, 0);
}

static void on_off_flag_can_turn_off_what_the_file_turned_on(void **state)
{
    (void)state;
    const char *path = write_file("multitenancy-required: yes\n");
    app_config c;
    OK(&c, "--config", path);
    assert_int_equal(c.srv.multitenancy_required, 1);
    OK(&c, "--config", path, "--multitenancy-required=false");
    assert_int_equal(c.srv.multitenancy_required, 0);
    OK(&c, "--multitenancy-required");
    assert_int_equal(c.srv.multitenancy_required, 1);
    REFUSED(WANT("--multitenancy-required=perhaps"), "flag --multitenancy-required", "perhaps");
}

static void empty_value_unsets_what_a_lower_source_set(void **state)
{
    (void)state;
    const char *path = write_file("tls-cert: /c.pem\ntls-key: /k.pem\n");
    setenv("SPANPROF_TLS_CERT", "", 1);
    app_config c;
    /* the variable unsets the cert; the key alone is refused, naming where it came from */
    REFUSED(WANT("--config", path), "--tls-cert and --tls-key go together", path, "tls-key");
    OK(&c, "--config", path, "--tls-key=");
    assert_null(c.srv.tls_cert);
    assert_null(c.srv.tls_key);
}

static void file_errors_name_file_line_and_key(void **state)
{
    (void)state;
    file_refused("workers: 2\n\n# typo below\nwrkers: 3\n", "4:1", "unknown key \"wrkers\"",
                 "see --help");
    file_refused("retention: soon\n", "1:12", "key \"retention\"", "not a duration");
    file_refused("max-recv-msg-size: lots\n", "1:20", "key \"max-recv-msg-size\"", "not a size");
    file_refused("workers: -3\n", "1:10", "key \"workers\"", "not a positive integer");
    file_refused("workers: 2.5\n", "1:10", "key \"workers\"", "not a positive integer");
    file_refused("multitenancy-required: maybe\n", "1:24", "key \"multitenancy-required\"",
                 "not true or false");
    file_refused("http-addr:\n  host: x\n", "2:3", "key \"http-addr\"", "not a map");
    file_refused("data-dir: [a, b]\n", "1:11", "key \"data-dir\"", "not a list");
    file_refused("data-dir: a\ndata-dir: b\n", "2:1", "key \"data-dir\"",
                 "set twice (first on line 1)");
    file_refused("data-dir: a\ndata_dir: b\n", "2:1", "key \"data_dir\"", "set twice");
    file_refused("tls-cert: a\ntls:\n  cert: b\n", "3:3", "key \"tls.cert\"", "set twice");
    file_refused("span-min-duration: 1s\nmin-span-duration: 2s\n", "2:1",
                 "key \"min-span-duration\"", "set twice");
    file_refused("workers: 2: 3\n", "1:11", "after key \"workers\"", "not valid YAML");
    file_refused("workers: 2\nqueue-size: \"open\n", "3:1", "after key \"queue-size\"",
                 "not valid YAML");
    file_refused("workers: &n 2\nqueue-size: *n\n", "2:13", "key \"queue-size\"", "aliases");
    file_refused("workers:\n", "1:1", "key \"workers\"", "has no value");
    file_refused("workers: ~\n", "1:1", "key \"workers\"", "has no value");
    file_refused("workers: 2\n---\nworkers: 3\n", "2:1", "second document", "keep one");
    file_refused("- workers\n", "1:1", "must be a map of settings", "key: value");
    file_refused("? [a]\n: b\n", "1:3", "a key must be a setting's name", "not a list");
    file_refused("config: other.yaml\n", "1:1", "key \"config\"", "cannot name another");
    file_refused("help: true\n", "1:1", "unknown key \"help\"", "see --help");
    file_refused("tls:\n  cerf: x\n", "2:3", "unknown key \"tls.cerf\"", "see --help");
    file_refused("nosuch:\n  cert: x\n", "1:1", "unknown key \"nosuch\"", "see --help");
    file_refused("data-dir: \"a\\0b\"\n", "1:11", "key \"data-dir\"", "NUL");
}

/* An unknown key's value is never echoed: it may be a secret put under the wrong name. */
static void unknown_key_does_not_echo_its_value(void **state)
{
    (void)state;
    app_config c;
    sp_err err;
    const char *path = write_file("ingest-auth-token: s3cr3t-t0ken\n");
    assert_int_equal(PARSE(&c, &err, "--config", path), SP_EINVAL);
    assert_non_null(strstr(err.msg, "unknown key \"ingest-auth-token\""));
    assert_null(strstr(err.msg, "s3cr3t"));
}

static void bad_encoding_is_refused_with_its_line(void **state)
{
    (void)state;
    const char *path = write_file_n(0, "bad.yaml", "workers: 2\ndata-dir: \xff\xfe\n", -1);
    REFUSED(WANT("--config", path), path, ":2:", "not valid YAML");
}

static void unreadable_or_oversized_file_is_refused_naming_it(void **state)
{
    (void)state;
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.yaml", dir);
    REFUSED(WANT("--config", missing), missing, "(--config)", "No such file");
    setenv("SPANPROF_CONFIG", missing, 1);
    REFUSED(WANT(NULL), missing, "(SPANPROF_CONFIG)", "No such file");
    unsetenv("SPANPROF_CONFIG");
    REFUSED(WANT("--config", dir), dir, "directory");
    /* one byte over 1 MiB of comments */
    size_t n = (1u << 20) + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, '#', n);
    const char *path = write_file_n(0, "big.yaml", big, (long)n);
    free(big);
    REFUSED(WANT("--config", path), path, "larger than 1024 KiB");
}

/* Deep nesting stops at the first key that continues no setting's name, before libyaml has read
 * much of it; the longest names can still be written fully nested. */
static void nesting_is_bounded_by_the_names(void **state)
{
    (void)state;
    size_t depth = 200000;
    char *deep = malloc(depth + 16);
    assert_non_null(deep);
    memcpy(deep, "data-dir: ", 10);
    memset(deep + 10, '[', depth);
    deep[10 + depth] = 0;
    file_refused(deep, "1:11", "key \"data-dir\"", "not a list");
    memcpy(deep, "pyroscope: ", 11);
    for (size_t i = 11; i + 4 < depth; i += 4)
        memcpy(deep + i, "{a: ", 4);
    file_refused(deep, "1:13", "unknown key \"pyroscope.a\"", "see --help");
    free(deep);
    app_config c;
    OK(&c, "--config",
       write_file("pyroscope:\n  basic:\n    auth:\n      user: u\n      password:\n"
                  "        file: /run/pw\n  url: http://p:4040\nstore: pyroscope\n"));
    assert_string_equal(c.pyroscope_basic_auth_password_file, "/run/pw");
    assert_string_equal(c.pyroscope_basic_auth_user, "u");
}

static void environment_errors_name_the_variable(void **state)
{
    (void)state;
    const struct {
        const char *var, *value, *what;
    } cases[] = {
        {"SPANPROF_WORKERS", "many", "not a positive integer"},
        {"SPANPROF_RETENTION", "soon", "not a duration"},
        {"SPANPROF_MAX_RECV_MSG_SIZE", "lots", "not a size"},
        {"SPANPROF_MULTITENANCY_REQUIRED", "perhaps", "not true or false"},
        {"SPANPROF_STORE", "bogus", "--store must be"},
        {"SPANPROF_DURABILITY", "sometimes", "--durability must be"},
        {"SPANPROF_LOG_LEVEL", "loud", "--log-level must be"},
        {"SPANPROF_TRACES_FORWARD_TO", "http://u:p@tempo:4318", "must not carry user:password"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv(cases[i].var, cases[i].value, 1);
        REFUSED(WANT(NULL), cases[i].var, cases[i].what);
        unsetenv(cases[i].var);
    }
    /* a cross-check on a value from the file names the file, the line and the key */
    const char *path = write_file("workers: 2\ndurability: sometimes\n");
    REFUSED(WANT("--config", path), "--durability must be", path, ":2", "durability");
}

/* Variables that are not settings are left alone: the secrets server/auth.c reads itself, and
 * whatever else is called SPANPROF_ (the test harness's own). */
static void other_spanprof_variables_are_not_settings(void **state)
{
    (void)state;
    setenv("SPANPROF_INGEST_AUTH_TOKEN", "not-a-path", 1);
    setenv("SPANPROF_QUERY_AUTH_TOKEN", "not-a-path", 1);
    setenv("SPANPROF_BIN", "/somewhere", 1);
    setenv("SPANPROF_HELP", "1", 1);
    app_config c;
    OK(&c, NULL);
    assert_null(c.srv.ingest_auth_token_file);
    assert_null(c.srv.query_auth_token_file);
    assert_int_equal(c.help, 0);
}

static void help_reads_neither_file_nor_environment(void **state)
{
    (void)state;
    setenv("SPANPROF_CONFIG", "/nonexistent/spanprof.yaml", 1);
    setenv("SPANPROF_WORKERS", "many", 1);
    app_config c;
    OK(&c, "--help");
    assert_int_equal(c.help, 1);
}

static void command_line_errors_name_the_flag(void **state)
{
    (void)state;
    REFUSED(WANT("--no-such-flag"), "unknown flag --no-such-flag");
    REFUSED(WANT("--workers"), "flag --workers needs a value");
    REFUSED(WANT("--workers", "0"), "flag --workers", "not a positive integer");
    REFUSED(WANT("--retention=soon"), "flag --retention", "not a duration");
    REFUSED(WANT("stray"), "unexpected argument \"stray\"");
    /* the command line is checked before any file is read */
    REFUSED(WANT("--config", "/nonexistent.yaml", "--bogus"), "unknown flag --bogus");
}

static char *usage_text(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    app_config_usage(f);
    assert_int_equal(fclose(f), 0);
    return text;
}

/* Every setting --help lists shows its default and its variable, is a key the file knows (with -
 * and with _), and its variable is read: one table, three sources. */
static void help_lists_every_setting_with_default_and_variable(void **state)
{
    (void)state;
    char *text = usage_text();
    assert_non_null(strstr(text, "Precedence"));
    assert_non_null(strstr(text, "SPANPROF_CONFIG"));
    int settings = 0;
    for (char *l = text; l && *l;) {
        char *nl = strchr(l, '\n');
        char line[1024];
        snprintf(line, sizeof line, "%.*s", nl ? (int)(nl - l) : (int)strlen(l), l);
        l = nl ? nl + 1 : NULL;
        if (strncmp(line, "  --", 4) != 0)
            continue;
        char name[64], var[96] = "SPANPROF_", key[64];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(line + 4, " "), line + 4);
        if (!strcmp(name, "help") || !strcmp(name, "version"))
            continue;
        settings++;
        size_t v = strlen(var);
        for (const char *s = name; *s && v + 1 < sizeof var; s++)
            var[v++] = *s == '-' ? '_' : (char)(*s >= 'a' && *s <= 'z' ? *s - 32 : *s);
        var[v] = 0;
        char want[128];
        snprintf(want, sizeof want, "$%s)", var);
        if (!strstr(line, "(default ") || !strstr(line, want))
            fail_msg("--help line lacks its default or $%s: %s", var, line);
        if (!strcmp(name, "config"))
            continue;
        /* a key the file knows: "has no value", not "unknown key" */
        for (int under = 0; under < 2; under++) {
            snprintf(key, sizeof key, "%s", name);
            for (char *s = key; under && *s; s++)
                *s = *s == '-' ? '_' : *s;
            char yaml[128];
            snprintf(yaml, sizeof yaml, "%s:\n", key);
            file_refused(yaml, "1:1", key, "has no value");
        }
        /* the variable is read: "\x01" is no size, duration, integer or boolean (refused,
         * naming the variable), and a string setting takes it (the configuration changes) */
        app_config before, c;
        sp_err err;
        OK(&before, NULL);
        setenv(var, "\x01", 1);
        if (PARSE(&c, &err, NULL) == SP_EINVAL) {
            if (!strstr(err.msg, var))
                fail_msg("$%s refused without naming it: %s", var, err.msg);
        } else if (memcmp(&before, &c, sizeof c) == 0) {
            fail_msg("$%s was not read", var);
        }
        unsetenv(var);
    }
    assert_true(settings >= 45);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(defaults_without_any_source, setup, teardown),
        cmocka_unit_test_setup_teardown(flag_beats_environment_beats_file_beats_default, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(config_file_from_environment_unless_a_flag_names_another,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(file_reads_every_value_type, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_file_and_comments_only_set_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(environment_reads_every_value_type, setup, teardown),
        cmocka_unit_test_setup_teardown(on_off_flag_can_turn_off_what_the_file_turned_on, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(empty_value_unsets_what_a_lower_source_set, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(file_errors_name_file_line_and_key, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_key_does_not_echo_its_value, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_encoding_is_refused_with_its_line, setup, teardown),
        cmocka_unit_test_setup_teardown(unreadable_or_oversized_file_is_refused_naming_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(nesting_is_bounded_by_the_names, setup, teardown),
        cmocka_unit_test_setup_teardown(environment_errors_name_the_variable, setup, teardown),
        cmocka_unit_test_setup_teardown(other_spanprof_variables_are_not_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(help_reads_neither_file_nor_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(command_line_errors_name_the_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(help_lists_every_setting_with_default_and_variable, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

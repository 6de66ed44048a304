/* spanprof admin <command>: the data tools (admin.h). Each command works on a data directory
 * given by --data-dir (else $SPANPROF_DATA_DIR, else ./data, as the server finds it); the work
 * itself is the store's (storage-adapter/sqlite_admin.c). Exit status: 0 done (check: no
 * damage), 1 damage found or the operation failed, 2 usage error. */
#include "admin.h"

#include "../query/params.h"
#include "../storage-adapter/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *data_dir, *out, *from, *until, *tenant, *dir;
    int help;
} admin_args;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: spanprof admin <command> [--data-dir DIR] [flags]\n\n"
            "commands:\n"
            "  check                 PRAGMA integrity_check plus spanprof's own invariants;\n"
            "                        exit 1 and one line per problem when damaged (works while\n"
            "                        the server runs)\n"
            "  vacuum                rewrite the database to give free pages back to the file\n"
            "                        system (stop the server first; needs room for a copy)\n"
            "  backup --out FILE     online copy of the database to a new FILE while the server\n"
            "                        runs and ingests (SQLite's backup API: one committed state)\n"
            "  export --from T --until T --out DIR [--tenant T]\n"
            "                        the profiles (gzipped pprof per series and 10 s bucket) and\n"
            "                        spans (with their span profiles) starting in [from, until)\n"
            "                        into the new directory DIR, with a manifest; works while the\n"
            "                        server runs. T: unix seconds/ms/ns, YYYYMMDD or now-1h\n"
            "  import DIR            store an export in --data-dir (created when missing); stop\n"
            "                        the server there first; the same export is refused twice\n\n"
            "--data-dir DIR: the server's data directory (default $SPANPROF_DATA_DIR, else\n"
            "./data). Exit status: 0 done, 1 damage found or failed, 2 usage error.\n");
}

static int parse(int argc, char **argv, admin_args *a)
{
    const char *env = getenv("SPANPROF_DATA_DIR");
    a->data_dir = env && *env ? env : "./data";
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i], *val = NULL;
        const char *eq = strchr(arg, '=');
        size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            a->help = 1;
            continue;
        }
        if (eq)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        if (n == 10 && !strncmp(arg, "--data-dir", n) && val)
            a->data_dir = val;
        else if (n == 5 && !strncmp(arg, "--out", n) && val)
            a->out = val;
        else if (n == 6 && !strncmp(arg, "--from", n) && val)
            a->from = val;
        else if (n == 7 && !strncmp(arg, "--until", n) && val)
            a->until = val;
        else if (n == 8 && !strncmp(arg, "--tenant", n) && val)
            a->tenant = val;
        else if (arg[0] != '-' && !a->dir) {
            a->dir = arg;
            if (!eq && val)
                i--; /* a positional argument takes no value */
        } else {
            fprintf(stderr, "spanprof admin: unknown flag or missing value: %.*s (see --help)\n",
                    (int)n, arg);
            return 2;
        }
    }
    return 0;
}

static void print_problem(void *ud, const char *problem)
{
    (void)ud;
    printf("problem: %s\n", problem);
}

static int cmd_check(const admin_args *a)
{
    sp_err err = {0};
    uint64_t problems = 0;
    if (store_check(a->data_dir, print_problem, NULL, &problems, &err) != 0) {
        fprintf(stderr, "spanprof admin check: %s\n", err.msg);
        return 1;
    }
    if (problems) {
        printf("%s: %" PRIu64 " problem%s found: restore a backup, or start a new --data-dir\n",
               a->data_dir, problems, problems == 1 ? "" : "s");
        return 1;
    }
    printf("%s: ok (integrity_check and spanprof's invariants)\n", a->data_dir);
    return 0;
}

static int cmd_vacuum(const admin_args *a)
{
    sp_err err = {0};
    uint64_t before, after;
    if (store_vacuum(a->data_dir, &before, &after, &err) != 0) {
        fprintf(stderr, "spanprof admin vacuum: %s\n", err.msg);
        return 1;
    }
    printf("%s: vacuumed, %" PRIu64 " bytes before, %" PRIu64 " after\n", a->data_dir, before,
           after);
    return 0;
}

static int cmd_backup(const admin_args *a)
{
    sp_err err = {0};
    if (!a->out) {
        fprintf(stderr, "spanprof admin backup: --out FILE is required\n");
        return 2;
    }
    if (store_backup(a->data_dir, a->out, NULL, &err) != 0) {
        fprintf(stderr, "spanprof admin backup: %s\n", err.msg);
        return 1;
    }
    printf("%s: backed up to %s\n", a->data_dir, a->out);
    return 0;
}

static int parse_time(const char *flag, const char *text, int64_t *out)
{
    if (!text) {
        fprintf(stderr, "spanprof admin export: %s is required\n", flag);
        return 2;
    }
    if (query_time_parse(text, query_now_ns(), out) != 0) {
        fprintf(stderr,
                "spanprof admin export: %s \"%.60s\" is not a time (unix seconds, ms or ns, "
                "YYYYMMDD, now-1h)\n",
                flag, text);
        return 2;
    }
    return 0;
}

static int cmd_export(const admin_args *a)
{
    int64_t from, until;
    int rc = parse_time("--from", a->from, &from);
    if (!rc)
        rc = parse_time("--until", a->until, &until);
    if (!rc && !a->out) {
        fprintf(stderr, "spanprof admin export: --out DIR is required\n");
        rc = 2;
    }
    if (rc)
        return rc;
    sp_err err = {0};
    if (admin_export(a->data_dir, a->out, a->tenant, from, until, &err) != 0) {
        fprintf(stderr, "spanprof admin export: %s\n", err.msg);
        return 1;
    }
    return 0;
}

static int cmd_import(const admin_args *a)
{
    if (!a->dir) {
        fprintf(stderr, "spanprof admin import: the export directory is required: "
                        "spanprof admin import DIR\n");
        return 2;
    }
    sp_err err = {0};
    if (admin_import(a->data_dir, a->dir, &err) != 0) {
        fprintf(stderr, "spanprof admin import: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int admin_main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(const admin_args *a);
    } cmds[] = {{"check", cmd_check},
                {"vacuum", cmd_vacuum},
                {"backup", cmd_backup},
                {"export", cmd_export},
                {"import", cmd_import}};
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    admin_args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc)
        return rc;
    if (a.help) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].run(&a);
    fprintf(stderr, "spanprof admin: unknown command \"%.60s\" (see spanprof admin --help)\n",
            argv[1]);
    return 2;
}

/* spanprof admin <command>: the data tools (admin.h). Each command works on a data directory
 * given by --data-dir (else $SPANPROF_DATA_DIR, else ./data, as the server finds it); the work
 * itself is the store's (storage-adapter/sqlite_admin.c). Exit status: 0 done (check: no
 * damage), 1 damage found or the operation failed, 2 usage error. */
#include "admin.h"

#include "../storage-adapter/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *data_dir, *out;
    int help;
} admin_args;

static void usage(FILE *f)
{
    fprintf(
        f, "usage: spanprof admin <command> [--data-dir DIR] [flags]\n\n"
           "commands:\n"
           "  check                 PRAGMA integrity_check plus spanprof's own invariants;\n"
           "                        exit 1 and one line per problem when damaged (works while\n"
           "                        the server runs)\n"
           "  vacuum                rewrite the database to give free pages back to the file\n"
           "                        system (stop the server first; needs room for a copy)\n"
           "  backup --out FILE     online copy of the database to a new FILE while the server\n"
           "                        runs and ingests (SQLite's backup API: one committed state)\n\n"
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
        else {
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

int admin_main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(const admin_args *a);
    } cmds[] = {{"check", cmd_check}, {"vacuum", cmd_vacuum}, {"backup", cmd_backup}};
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

/* The checkpointer: WAL checkpoints on a thread and a connection of their own.
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past 1000 pages, on the
 * committing connection: here the writer thread, with callers waiting for that commit. At half
 * load one commit in fourteen took 15-25 ms instead of 0.5-1.5 ms (the pages copied into the
 * database and, with --durability normal, the database's fsync), and the checkpoint was 5.6 % of
 * the writer thread's time at full load, where that thread bounds throughput.
 *
 * Invariants:
 *   K1. The writer's connection never checkpoints while the checkpointer keeps up: its WAL hook
 *       (which replaces SQLite's automatic checkpoint) only wakes the checkpointer.
 *   K2. The WAL stays bounded: past CKPT_INLINE_PAGES the writer checkpoints in the hook itself,
 *       as SQLite would have (the checkpointer is behind or gone).
 *   K3. Durability is unchanged: a commit is as durable as --durability made it before any
 *       checkpoint; the checkpoint connection syncs as the writer's would (synchronous alike),
 *       and every checkpoint is PASSIVE: it never waits for, or blocks, the writer or a reader.
 *   K4. The checkpointer stops after the writer thread (nothing wakes it then) and before the
 *       closing TRUNCATE checkpoint; its connection is closed by then.
 */
#include "sqlite_store.h"

#include "../common/log.h"

#include <stdio.h>

#define CKPT_PAGES        1000  /* SQLite's default automatic checkpoint */
#define CKPT_INLINE_PAGES 16000 /* 64 MiB of 4 KiB pages (K2) */

static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    sqs_store *s = arg;
    (void)name;
    if (frames >= CKPT_INLINE_PAGES) {
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&s->ckpt_mu);
        if (rc == SQLITE_OK)
            s->ckpt_inline++;
        pthread_mutex_unlock(&s->ckpt_mu);
        return SQLITE_OK; /* the commit stands whatever the checkpoint did */
    }
    if (frames >= CKPT_PAGES) {
        pthread_mutex_lock(&s->ckpt_mu);
        s->ckpt_due = 1;
        pthread_cond_signal(&s->ckpt_cv);
        pthread_mutex_unlock(&s->ckpt_mu);
    }
    return SQLITE_OK;
}

static void *checkpoint_main(void *arg)
{
    static sp_ratelimit warn_rl;
    sqs_store *s = arg;
    pthread_mutex_lock(&s->ckpt_mu);
    for (;;) {
        while (!s->ckpt_due && !s->ckpt_stop)
            pthread_cond_wait(&s->ckpt_cv, &s->ckpt_mu);
        if (s->ckpt_stop)
            break;
        s->ckpt_due = 0;
        pthread_mutex_unlock(&s->ckpt_mu);
        int rc = sqlite3_wal_checkpoint_v2(s->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        /* BUSY: another checkpoint holds the lock (the writer's, K2); the next commit wakes us. */
        int failed = rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY;
        uint64_t held = 0;
        if (failed && sp_ratelimit_ok(&warn_rl, 10000, &held))
            sp_warn("msg=\"WAL checkpoint failed\" error=\"%s\" held_back=%llu",
                    sqlite3_errmsg(s->ckpt_db), (unsigned long long)held);
        pthread_mutex_lock(&s->ckpt_mu);
        s->ckpt_runs += rc == SQLITE_OK;
        s->ckpt_failed += failed;
    }
    pthread_mutex_unlock(&s->ckpt_mu);
    return NULL;
}

void sqs_checkpointer_start(sqs_store *s)
{
    sp_err err = {0};
    if (sqs_open_checkpointer(s, &s->ckpt_db, &err) != 0) {
        sp_warn("msg=\"no checkpointer: commits checkpoint the WAL themselves\" error=\"%s\"",
                err.msg);
        return;
    }
    if (pthread_create(&s->ckpt_thread, NULL, checkpoint_main, s) != 0) {
        sp_warn("msg=\"no checkpointer thread: commits checkpoint the WAL themselves\"");
        sqlite3_close(s->ckpt_db);
        s->ckpt_db = NULL;
        return;
    }
    pthread_setname_np(s->ckpt_thread, "store-ckpt");
    s->ckpt_started = 1;
    sqlite3_wal_hook(s->w.db, wal_hook, s); /* K1: replaces the automatic checkpoint */
}

void sqs_checkpointer_stop(sqs_store *s)
{
    if (!s->ckpt_started)
        return;
    if (s->w.db) /* K4: back to SQLite's own, for whatever the writer's connection still does */
        sqlite3_wal_autocheckpoint(s->w.db, CKPT_PAGES);
    pthread_mutex_lock(&s->ckpt_mu);
    s->ckpt_stop = 1;
    pthread_cond_signal(&s->ckpt_cv);
    pthread_mutex_unlock(&s->ckpt_mu);
    pthread_join(s->ckpt_thread, NULL);
    s->ckpt_started = 0;
    sqlite3_close(s->ckpt_db);
    s->ckpt_db = NULL;
}

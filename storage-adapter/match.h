/* Label matching for reads: compiled matchers evaluated against one series' labels.
 *
 * Backend-neutral (the SQLite reads use it; a remote backend would pass matchers on instead).
 * Prometheus rules: a label the series lacks matches as the empty string; regexes are anchored at
 * both ends.
 */
#ifndef STORE_MATCH_H
#define STORE_MATCH_H

#include "store.h"

#include <regex.h>

typedef struct store_match {
    const store_matcher *m;
    size_t n;
    regex_t *re; /* n slots; compiled for the regex operators only */
    uint8_t *compiled;
} store_match;

/* Compiles the regexes; SP_EINVAL with the regex error for a bad one. */
int store_match_compile(store_match *mm, const store_matcher *m, size_t n, sp_err *err);
void store_match_free(store_match *mm);

/* Returns a label's value, or NULL when the series has no such label. */
typedef const char *(*store_label_fn)(void *ctx, const char *name);

/* 1 when every matcher accepts the labels `get` reports, else 0. */
int store_match_eval(const store_match *mm, store_label_fn get, void *ctx);

#endif

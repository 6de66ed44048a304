/* corr_attach_part: the parts of one streamed request share a memo of the frame names and stacks
 * of their tables (correlator.h). What a user sees: a span that arrives later claims every
 * part's samples, named by their own frames, also when the correlator renumbered its names
 * between two parts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "corr_fixture.h"
#include "prints_fixture.h"
#include "correlator/internal.h" /* interns_gen: when the correlator renumbered its names */

static void attach_part(corr *c, sp_profile *p, int64_t now, corr_memo *m, sp_arena *a)
{
    sp_batch b = {.tenant = "t1", .arena = a};
    sp_batch_add_profile(&b, p);
    corr_ticket t;
    sp_err err = {0};
    if (corr_attach_part(c, &b, now, &t, m, &err))
        fail_msg("corr_attach_part: %s", err.msg);
    corr_commit(c, &t);
}

/* The leaf's function name of a late sample, and its depth. */
static const char *leaf_of(const sp_profile *late, const sp_sample *s, uint32_t *depth)
{
    *depth = s->nlocations;
    const sp_location *leaf = &late->locations[s->location_ids[0]];
    return late->strings[late->functions[leaf->lines[0].function_id].name];
}

/* Sends profiles of never-seen leaves (one a round, from from_ms on, unprinted) until the
 * correlator renumbers its names and stacks; returns how many rounds it took. */
static int until_a_rebuild(corr *c, fixture *f, int64_t from_ms)
{
    uint64_t gen = c->interns_gen;
    int i = 0;
    for (; i < 50000 && c->interns_gen == gen; i++) {
        char *leaf = sp_arena_alloc(f->a, 48);
        snprintf(leaf, 48, "leaf_never_seen_before_%d", i);
        const char **names = sp_arena_memdup(f->a, strs, sizeof strs);
        names[3] = leaf;
        uint64_t ts[] = {(uint64_t)(from_ms + i) * MS};
        sp_batch pb = batch(f, "t1");
        sp_profile *p = profile(f->a, ts, 1, PID, TID);
        p->strings = names;
        sp_batch_add_profile(&pb, p);
        attach(c, &pb, (from_ms + i) * MS);
    }
    assert_true(c->interns_gen != gen);
    return i;
}

/* Two parts over one table (the converter gives every part the request's tables), one on
 * main→handle→parse, one on main→handle: the late span's samples name each part's own leaf. */
static void parts_sharing_a_memo_keep_their_frames(void **state)
{
    fixture *f = *state;
    corr *c = corr_new(NULL);
    corr_memo *m = corr_memo_new();
    assert_non_null(m);
    uint64_t t1[] = {150 * MS}, t2[] = {160 * MS, 170 * MS};
    sp_profile *p1 = profile(f->a, t1, 1, PID, TID);
    sp_profile *p2 = profile(f->a, t2, 2, PID, TID);
    p2->functions = p1->functions;
    p2->locations = p1->locations;
    static uint32_t handle_first[] = {2, 1};
    p2->samples[0].location_ids = handle_first;
    p2->samples[0].nlocations = 2;
    attach_part(c, p1, 0, m, f->a);
    attach_part(c, p2, 0, m, f->a);
    corr_memo_free(m);

    sp_span v[] = {span(7, 100, 200, PID, TID)};
    sp_batch tb;
    send_spans(c, f, v, 1, &tb);
    assert_int_equal(late_value(&tb, 7), 30 * MS);
    int64_t parse = 0, handle = 0;
    for (size_t i = 0; i < tb.nprofiles; i++)
        for (uint32_t k = 0; k < tb.profiles[i]->nsamples; k++) {
            uint32_t depth;
            const sp_sample *s = &tb.profiles[i]->samples[k];
            const char *leaf = leaf_of(tb.profiles[i], s, &depth);
            if (strcmp(leaf, "parse") == 0 && depth == 3)
                parse += s->value;
            else if (strcmp(leaf, "handle") == 0 && depth == 2)
                handle += s->value;
            else
                fail_msg("late sample on %s (%u frames)", leaf, depth);
        }
    assert_int_equal(parse, 10 * MS);
    assert_int_equal(handle, 20 * MS);
    corr_free(c);
}

/* Between two parts, never-seen frames push the correlator's tables over its budget and it
 * renumbers its names and stacks: the second part's memo from before must not be trusted, or
 * its sample would be kept under another stack's id. */
static void memo_from_before_a_rebuild_is_not_trusted(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 256 * 1024, .window_ns = 1000000 * MS};
    corr *c = corr_new(&o);
    corr_memo *m = corr_memo_new();
    assert_non_null(m);
    uint64_t t0[] = {1 * MS};
    sp_profile *p1 = profile(f->a, t0, 1, PID, TID);
    attach_part(c, p1, 0, m, f->a);
    int i = until_a_rebuild(c, f, 10);
    int64_t at = 200 + i; /* far from the rounds: the span takes part 2 alone */
    uint64_t t2[] = {(uint64_t)at * MS};
    sp_profile *p2 = profile(f->a, t2, 1, PID, TID); /* main→handle→parse again */
    p2->functions = p1->functions;
    p2->locations = p1->locations;
    attach_part(c, p2, at * MS, m, f->a);
    corr_memo_free(m);

    sp_span v[] = {span(9, at - 15, at + 15, PID, TID)};
    sp_batch tb;
    send_spans(c, f, v, 1, &tb);
    assert_int_equal(late_value(&tb, 9), 10 * MS);
    for (size_t k = 0; k < tb.nprofiles; k++)
        for (uint32_t j = 0; j < tb.profiles[k]->nsamples; j++) {
            uint32_t depth;
            const char *leaf = leaf_of(tb.profiles[k], &tb.profiles[k]->samples[j], &depth);
            assert_string_equal(leaf, "parse");
            assert_int_equal(depth, 3);
        }
    corr_free(c);
}

/* The value of tb's late samples whose two innermost frames are leaf and middle (all three
 * frames deep); any other late sample fails. */
static int64_t late_leaves(const sp_batch *tb, const char *leaf, const char *middle)
{
    int64_t sum = 0;
    for (size_t k = 0; k < tb->nprofiles; k++)
        for (uint32_t j = 0; j < tb->profiles[k]->nsamples; j++) {
            const sp_profile *lp = tb->profiles[k];
            const sp_sample *s = &lp->samples[j];
            uint32_t depth;
            const char *got = leaf_of(lp, s, &depth);
            assert_int_equal(depth, 3);
            const sp_location *mid = &lp->locations[s->location_ids[1]];
            const char *got_mid = lp->strings[lp->functions[mid->lines[0].function_id].name];
            int known = (strcmp(got, "parse") == 0 && strcmp(got_mid, "handle") == 0) ||
                        (strcmp(got, "parse") == 0 && strcmp(got_mid, "main") == 0);
            if (!known)
                fail_msg("late sample on %s;%s", got_mid, got);
            if (strcmp(got, leaf) == 0 && strcmp(got_mid, middle) == 0)
                sum += s->value;
        }
    return sum;
}

/* A printed profile at 170 ms whose stack, from the root, is handle→main→parse. */
static sp_profile *printed_on_the_reordered_stack(fixture *f)
{
    uint64_t *t = sp_arena_alloc(f->a, sizeof *t);
    *t = 170 * MS;
    sp_profile *p = profile(f->a, t, 1, PID, TID);
    static uint32_t reordered[] = {3, 1, 2};
    p->samples[0].location_ids = reordered;
    give_prints(f->a, p);
    return p;
}

/* A late span over 100-200 ms claims three samples of 10 ms: two on main→handle→parse, one on
 * handle→main→parse. */
static void span_claims_two_and_one(corr *c, fixture *f)
{
    sp_span v[] = {span(8, 100, 200, PID, TID)};
    sp_batch tb;
    send_spans(c, f, v, 1, &tb);
    assert_int_equal(late_value(&tb, 8), 30 * MS);
    assert_int_equal(late_leaves(&tb, "parse", "handle"), 20 * MS);
    assert_int_equal(late_leaves(&tb, "parse", "main"), 10 * MS);
}

/* Requests whose stacks come printed: a stack a later request brings again is found by its
 * print, with its own frames; another list of the same locations is another stack; and after
 * the correlator renumbered its stacks, a print from before names nothing (or its sample would
 * be kept under another stack's id). */
static void stacks_found_by_print_keep_their_frames(void **state)
{
    fixture *f = *state;
    corr_options o = {.max_bytes = 256 * 1024, .window_ns = 1000000 * MS};
    corr *c = corr_new(&o);
    uint64_t t1[] = {150 * MS}, t2[] = {160 * MS};
    sp_profile *p1 = profile(f->a, t1, 1, PID, TID);
    give_prints(f->a, p1);
    attach_part(c, p1, 0, NULL, f->a);
    sp_profile *p2 = profile(f->a, t2, 1, PID, TID); /* the same stack, a new request */
    give_prints(f->a, p2);
    attach_part(c, p2, 0, NULL, f->a);
    attach_part(c, printed_on_the_reordered_stack(f), 0, NULL, f->a); /* its own stack */
    span_claims_two_and_one(c, f);

    int i = until_a_rebuild(c, f, 300); /* the print table keeps p1's entry */
    int64_t at = 500 + i;               /* far from the rounds: the span takes this one alone */
    uint64_t t4[] = {(uint64_t)at * MS};
    sp_profile *p4 = profile(f->a, t4, 1, PID, TID); /* main→handle→parse again */
    give_prints(f->a, p4);
    attach_part(c, p4, at * MS, NULL, f->a);
    sp_span v2[] = {span(9, at - 15, at + 15, PID, TID)};
    sp_batch tb;
    send_spans(c, f, v2, 1, &tb);
    assert_int_equal(late_value(&tb, 9), 10 * MS);
    assert_int_equal(late_leaves(&tb, "parse", "handle"), 10 * MS);
    corr_free(c);
}

/* A correlator that took one printed request (main→handle→parse at 150 ms, *first), and the
 * profile of a second one at 160 ms on handle→main→parse over the strings given. */
static corr *after_one_printed_request(fixture *f, sp_profile **first, sp_profile **second,
                                       const char **strings)
{
    corr *c = corr_new(NULL);
    uint64_t t1[] = {150 * MS}, t2[] = {160 * MS};
    *first = profile(f->a, t1, 1, PID, TID);
    give_prints(f->a, *first);
    attach_part(c, *first, 0, NULL, f->a);
    *second = profile(f->a, t2, 1, PID, TID);
    static uint32_t reordered[] = {3, 1, 2};
    (*second)->samples[0].location_ids = reordered;
    (*second)->strings = strings;
    give_prints(f->a, *second);
    return c;
}

/* after_one_printed_request() with the second request's strings naming its leaf "other". */
static corr *second_leaf_says_other(fixture *f, sp_profile **first, sp_profile **second)
{
    const char **names = sp_arena_memdup(f->a, strs, sizeof strs);
    names[3] = "other";
    return after_one_printed_request(f, first, second, names);
}

/* The late span over both requests' samples (100-200 ms): what it claimed, in tb. */
static void claim_both(corr *c, fixture *f, sp_batch *tb)
{
    sp_span v[] = {span(8, 100, 200, PID, TID)};
    send_spans(c, f, v, 1, tb);
    assert_int_equal(late_value(tb, 8), 20 * MS);
}

/* The correlator trusts a stack print as the store does: a later request whose sample carries
 * a known print is kept under that stack without its frames being named (here its list differs,
 * which no converter would send: it shows the print found the stack). */
static void a_known_stack_print_is_interned_without_its_frames(void **state)
{
    fixture *f = *state;
    sp_profile *p1, *p2;
    corr *c = after_one_printed_request(f, &p1, &p2, strs);
    ((sp_print *)p2->stack_prints)[1] = p1->stack_prints[1];
    attach_part(c, p2, 0, NULL, f->a);
    sp_batch tb;
    claim_both(c, f, &tb);
    assert_int_equal(late_leaves(&tb, "parse", "handle"), 20 * MS);
    corr_free(c);
}

/* Frames are named through their location prints too (cw_names_prefill): a location whose print
 * a request brought before takes the name it had then, without its own being read (here the
 * later request's leaf says "other" under the print of "parse", which no converter would send:
 * it shows the print named the frame). Its stack is new, so its frames are named. */
static void a_known_location_print_is_named_without_its_name(void **state)
{
    fixture *f = *state;
    sp_profile *p1, *p2;
    corr *c = second_leaf_says_other(f, &p1, &p2);
    ((sp_print *)p2->location_prints)[3] = p1->location_prints[3];
    attach_part(c, p2, 0, NULL, f->a);
    sp_batch tb;
    claim_both(c, f, &tb);
    assert_int_equal(late_leaves(&tb, "parse", "handle"), 10 * MS);
    assert_int_equal(late_leaves(&tb, "parse", "main"), 10 * MS);
    corr_free(c);
}

/* A request whose stacks the stacks-by-print cache all knows names none of its frames: the
 * location names of a request are resolved (and remembered by location print) only once one of
 * its stacks is new. Here the second request's leaf says "other" under a fresh location print,
 * which no converter would send; its stack is known, so nothing is read, and the third request,
 * whose new stack has a leaf of that print, is named by its own leaf ("parse"), not by what the
 * second one's name would have taught. */
static void a_request_of_known_stacks_names_none_of_its_frames(void **state)
{
    fixture *f = *state;
    sp_profile *p1, *p2;
    corr *c = second_leaf_says_other(f, &p1, &p2);
    ((sp_print *)p2->stack_prints)[1] = p1->stack_prints[1];
    const sp_print fresh = {0x0123456789abcdefull, 0xfedcba9876543210ull};
    ((sp_print *)p2->location_prints)[3] = fresh;
    attach_part(c, p2, 0, NULL, f->a);

    sp_profile *p3 = printed_on_the_reordered_stack(f);
    ((sp_print *)p3->location_prints)[3] = fresh;
    attach_part(c, p3, 0, NULL, f->a);
    span_claims_two_and_one(c, f);
    corr_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(parts_sharing_a_memo_keep_their_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(memo_from_before_a_rebuild_is_not_trusted, setup, teardown),
        cmocka_unit_test_setup_teardown(stacks_found_by_print_keep_their_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(a_known_stack_print_is_interned_without_its_frames, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_known_location_print_is_named_without_its_name, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_request_of_known_stacks_names_none_of_its_frames, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* otlp/convert.c frame_type(): a location's profile.frame.type is its first attribute with that
 * key, whichever attribute_table entries it shares with other locations (the converter reads
 * each entry once per request). The oracle is the made-up names of unnamed frames, written out
 * here by hand ("<frame type> 0x<address>"). The converted profile carries its locations'
 * prints (common/profile.h), made from its final tables. Also what else the converter makes of
 * a request's tables: a sample's service, its stack's location ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "otlp/convert.h"
#include "pprof/profile.pb-c.h"
#include "wire/pprof_write.h"

#include <string.h>

typedef Opentelemetry__Proto__Profiles__V1development__ProfilesDictionary Dict;
typedef Opentelemetry__Proto__Profiles__V1development__Profile Profile;
typedef Opentelemetry__Proto__Profiles__V1development__Sample Sample;
typedef Opentelemetry__Proto__Profiles__V1development__Stack Stack;
typedef Opentelemetry__Proto__Profiles__V1development__Location Location;
typedef Opentelemetry__Proto__Profiles__V1development__ValueType ValueType;
typedef Opentelemetry__Proto__Profiles__V1development__ResourceProfiles ResourceProfiles;
typedef Opentelemetry__Proto__Profiles__V1development__ScopeProfiles ScopeProfiles;
typedef Opentelemetry__Proto__Profiles__V1development__KeyValueAndUnit Kvu;
typedef Opentelemetry__Proto__Common__V1__AnyValue Any;

#define NATTR 5
#define NLOC  8 /* entry 0 included */

/* Attribute entries: 1 frame type "native", 2 thread.name, 3 frame type "kernel", 4 frame type
 * as an int. Each location's attribute list, and the name its frame must get. */
static const int32_t loc_attrs[NLOC][3] = {{0}, {1}, {2, 1}, {1}, {3, 1, 0}, {2, 0}, {4}, {99, 3}};
static const size_t loc_nattrs[NLOC] = {0, 1, 2, 1, 2, 1, 1, 2};
static const char *const want[NLOC] = {
    NULL,     "native 0x1000", "native 0x2000", "native 0x3000", "kernel 0x4000",
    "0x5000", "7 0x6000",      "kernel 0x7000"};

/* Converts a request of one resource (res, may be NULL), one scope and one profile of samples
 * smp[0..n) (type strings 1 and 2 of d) over d into b (from arena a), asserting it converts. */
static void convert_one(Dict *d, Sample **smp, size_t n,
                        Opentelemetry__Proto__Resource__V1__Resource *res, sp_arena *a, sp_batch *b)
{
    ValueType st = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__VALUE_TYPE__INIT;
    st.type_strindex = 1;
    st.unit_strindex = 2;
    Profile pr = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILE__INIT, *prof = &pr;
    pr.sample_type = &st;
    pr.time_unix_nano = 1700000000000000000ull;
    pr.samples = smp;
    pr.n_samples = n;
    ScopeProfiles sc = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__SCOPE_PROFILES__INIT,
                  *scp = &sc;
    sc.profiles = &prof;
    sc.n_profiles = 1;
    ResourceProfiles rp = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__RESOURCE_PROFILES__INIT,
                     *rpp = &rp;
    rp.resource = res;
    rp.scope_profiles = &scp;
    rp.n_scope_profiles = 1;
    otlp_profiles_req q =
        OPENTELEMETRY__PROTO__COLLECTOR__PROFILES__V1DEVELOPMENT__EXPORT_PROFILES_SERVICE_REQUEST__INIT;
    q.resource_profiles = &rpp;
    q.n_resource_profiles = 1;
    q.dictionary = d;
    *b = (sp_batch){.tenant = "t", .arena = a};
    sp_err err = {0};
    assert_int_equal(otlp_profiles_convert(&q, NULL, 1, b, &err), 0);
}

/* *s as a sample of one count on stack stack_index, *one the value it points at (1). */
static Sample *one_count_sample(Sample *s, int32_t stack_index, int64_t *one)
{
    *s = (Sample)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__SAMPLE__INIT;
    s->stack_index = stack_index;
    s->values = one;
    s->n_values = 1;
    return s;
}

static void locations_share_attribute_entries_and_keep_their_first_frame_type(void **state)
{
    (void)state;
    char *strings[] = {"", "cpu", "nanoseconds", "profile.frame.type", "thread.name"};
    Any val[NATTR];
    Kvu kv[NATTR], *kvp[NATTR];
    for (int i = 0; i < NATTR; i++) {
        val[i] = (Any)OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
        kv[i] = (Kvu)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__KEY_VALUE_AND_UNIT__INIT;
        kv[i].value = &val[i];
        kvp[i] = &kv[i];
    }
    const char *sval[NATTR] = {NULL, "native", "worker-1", "kernel", NULL};
    for (int i = 1; i < 4; i++) {
        val[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
        val[i].string_value = (char *)sval[i];
        kv[i].key_strindex = i == 2 ? 4 : 3;
    }
    val[4].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    val[4].int_value = 7;
    kv[4].key_strindex = 3;

    Location loc[NLOC], *locp[NLOC];
    int32_t loc_index[NLOC];
    Stack stack[NLOC], *stackp[NLOC];
    Sample s[NLOC], *sp_[NLOC];
    int64_t one = 1;
    for (int i = 0; i < NLOC; i++) {
        loc[i] = (Location)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LOCATION__INIT;
        loc[i].address = 0x1000 * (uint64_t)i;
        loc[i].attribute_indices = (int32_t *)loc_attrs[i];
        loc[i].n_attribute_indices = loc_nattrs[i];
        locp[i] = &loc[i];
        loc_index[i] = i;
        stack[i] = (Stack)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__STACK__INIT;
        stack[i].location_indices = &loc_index[i];
        stack[i].n_location_indices = i ? 1 : 0;
        stackp[i] = &stack[i];
        sp_[i] = one_count_sample(&s[i], i, &one);
    }
    Dict d = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILES_DICTIONARY__INIT;
    d.string_table = strings;
    d.n_string_table = sizeof strings / sizeof *strings;
    d.attribute_table = kvp;
    d.n_attribute_table = NATTR;
    d.location_table = locp;
    d.n_location_table = NLOC;
    d.stack_table = stackp;
    d.n_stack_table = NLOC;

    sp_arena *a = sp_arena_new(0);
    sp_batch b;
    convert_one(&d, sp_ + 1, NLOC - 1, NULL, a, &b);
    assert_int_equal(b.nprofiles, 1);
    const sp_profile *p = b.profiles[0];
    assert_int_equal(p->nsamples, NLOC - 1);
    for (uint32_t k = 0; k < p->nsamples; k++) {
        const sp_sample *smp = &p->samples[k];
        assert_int_equal(smp->nlocations, 1);
        const sp_location *l = &p->locations[smp->location_ids[0]];
        uint32_t i = smp->location_ids[0];
        /* the name is left to readers (sp_function.made_up, name 0), who all make it alike */
        const sp_function *f = &p->functions[l->lines[0].function_id];
        assert_true(f->made_up);
        assert_int_equal(f->name, 0);
        const char *nm[1];
        char buf[SP_FRAME_NAME_MAX];
        assert_int_equal(sp_location_names(p, i, nm, NULL, 1, buf), 1);
        const char *name = nm[0];
        assert_string_equal(name, want[i]);
        const char *ft = l->frame_type ? p->strings[l->frame_type] : "";
        assert_int_equal(strncmp(name, ft, strlen(ft)), 0);
    }
    /* Written as pprof (the Pyroscope pusher's form), every frame carries the name readers make:
     * the writer adds the names the converter left to readers to the string table. */
    sp_buf pb;
    sp_buf_init(&pb, 0);
    sp_err err = {0};
    assert_int_equal(wire_pprof_encode(p, &pb, &err), 0);
    Perftools__Profiles__Profile *pp =
        perftools__profiles__profile__unpack(NULL, pb.len, (const uint8_t *)pb.data);
    assert_non_null(pp);
    assert_int_equal(pp->n_location, NLOC - 1);
    for (size_t k = 0; k < pp->n_location; k++) {
        const Perftools__Profiles__Location *pl = pp->location[k];
        assert_int_equal(pl->n_line, 1);
        const Perftools__Profiles__Function *pf = NULL;
        for (size_t j = 0; j < pp->n_function; j++)
            if (pp->function[j]->id == pl->line[0]->function_id)
                pf = pp->function[j];
        assert_non_null(pf);
        assert_true(pf->name > 0 && (size_t)pf->name < pp->n_string_table);
        assert_string_equal(pp->string_table[pf->name], want[pl->id]);
        assert_string_equal(pp->string_table[pf->system_name], want[pl->id]);
    }
    perftools__profiles__profile__free_unpacked(pp, NULL);
    sp_buf_free(&pb);
    /* The locations' prints come with the profile, made from the tables as converted (each
     * bare location with its made-up line): the same as printing the final tables again, and
     * one per distinct content. */
    assert_non_null(p->location_prints);
    sp_print *again;
    assert_int_equal(sp_location_prints(p, a, &again), 0);
    for (uint32_t i = 1; i < NLOC; i++) {
        assert_true(p->locations[i].bare);
        assert_memory_equal(&p->location_prints[i], &again[i], sizeof again[i]);
        for (uint32_t j = 1; j < i; j++)
            assert_memory_not_equal(&p->location_prints[i], &p->location_prints[j],
                                    sizeof again[i]);
    }
    /* And each sample's stack its print, named by the sample: the print of its location list
     * over the final tables' prints, one per stack_table entry. */
    assert_non_null(p->stack_prints);
    for (uint32_t k = 0; k < p->nsamples; k++) {
        const sp_sample *smp = &p->samples[k];
        assert_int_equal(smp->stack, k + 1); /* its stack_index */
        assert_true(smp->stack < p->nstack_prints);
        sp_print want_print =
            sp_stack_print(again, p->nlocations, smp->location_ids, smp->nlocations);
        assert_memory_equal(&p->stack_prints[smp->stack], &want_print, sizeof want_print);
        for (uint32_t j = 0; j < k; j++)
            assert_memory_not_equal(&p->stack_prints[p->samples[j].stack], &want_print,
                                    sizeof want_print);
    }
    sp_arena_free(a);
}

static const char *service_of(const sp_profile *p)
{
    for (uint32_t i = 0; i < p->nseries; i++)
        if (strcmp(p->series[i].name, "service_name") == 0)
            return p->series[i].value;
    return NULL;
}

/* A sample's own service.name splits the profile (the first such attribute of the sample; one
 * whose value is no string names none), in the order the services first appear, the resource's
 * first. The converter reads it from the attribute entries it classifies once per request. */
static void samples_with_a_service_name_split_the_profile(void **state)
{
    (void)state;
    char *strings[] = {"", "cpu", "nanoseconds", "service.name", "thread.id"};
    enum { N = 5 };
    Any val[N];
    Kvu kv[N], *kvp[N];
    for (int i = 0; i < N; i++) {
        val[i] = (Any)OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
        kv[i] = (Kvu)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__KEY_VALUE_AND_UNIT__INIT;
        kv[i].value = &val[i];
        kv[i].key_strindex = i == 3 ? 4 : 3;
        kvp[i] = &kv[i];
    }
    /* 1 service.name "checkout", 2 service.name "cart", 3 thread.id 7, 4 service.name 5 */
    val[1].value_case = val[2].value_case =
        OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    val[1].string_value = "checkout";
    val[2].string_value = "cart";
    val[3].value_case = val[4].value_case =
        OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    val[3].int_value = 7;
    val[4].int_value = 5;
    static const int32_t attrs[6][2] = {{3, 1}, {2}, {3}, {4}, {1, 2}, {4, 2}};
    static const size_t nattrs[6] = {2, 1, 1, 1, 2, 2};
    Sample smp[6], *smpp[6];
    int64_t one = 1;
    for (int i = 0; i < 6; i++) {
        smpp[i] = one_count_sample(&smp[i], 0, &one);
        smp[i].attribute_indices = (int32_t *)attrs[i];
        smp[i].n_attribute_indices = nattrs[i];
    }
    Dict d = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILES_DICTIONARY__INIT;
    d.string_table = strings;
    d.n_string_table = sizeof strings / sizeof *strings;
    d.attribute_table = kvp;
    d.n_attribute_table = N;
    Opentelemetry__Proto__Common__V1__AnyValue rv =
        OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    rv.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    rv.string_value = "shop";
    Opentelemetry__Proto__Common__V1__KeyValue
        rkv = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT,
        *rkvp = &rkv;
    rkv.key = "service.name";
    rkv.value = &rv;
    Opentelemetry__Proto__Resource__V1__Resource res =
        OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    res.attributes = &rkvp;
    res.n_attributes = 1;

    sp_arena *a = sp_arena_new(0);
    sp_batch b;
    convert_one(&d, smpp, 6, &res, a, &b);
    assert_int_equal(b.nprofiles, 3);
    static const char *const services[3] = {"shop", "checkout", "cart"};
    static const uint32_t counts[3] = {3, 2, 1};
    for (int k = 0; k < 3; k++) {
        assert_string_equal(service_of(b.profiles[k]), services[k]);
        assert_int_equal(b.profiles[k]->nsamples, counts[k]);
    }
    assert_int_equal(b.profiles[1]->samples[0].tid, 7); /* sample 0: thread.id too */
    sp_arena_free(a);
}

/* A sample's location ids are its Stack's indices, the same list for every sample of the stack;
 * an index that names no location (only a request nobody validated has one: negative, or the
 * table's size and past) is 0 in its place, the others kept. Written out here by hand. */
static void stack_indices_become_location_ids_out_of_range_ones_0(void **state)
{
    (void)state;
    char *strings[] = {"", "cpu", "nanoseconds"};
    enum { NL = 5 };
    Location loc[NL], *locp[NL];
    for (int i = 0; i < NL; i++) {
        loc[i] = (Location)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__LOCATION__INIT;
        loc[i].address = 0x100 * (uint64_t)i;
        locp[i] = &loc[i];
    }
    static int32_t in_range[] = {3, 1, 4, 0, 2}, out_of_range[] = {1, NL, -4, 0, 99, 2, NL - 1},
                   just_past[] = {2, NL}, negative[] = {-1, 3};
    static const uint32_t want_out[] = {1, 0, 0, 0, 0, 2, NL - 1};
    Stack st[6], *stp[6];
    for (int i = 0; i < 6; i++) {
        st[i] = (Stack)OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__STACK__INIT;
        stp[i] = &st[i];
    }
    st[1].location_indices = in_range;
    st[1].n_location_indices = sizeof in_range / sizeof *in_range;
    st[2].location_indices = out_of_range;
    st[2].n_location_indices = sizeof out_of_range / sizeof *out_of_range;
    /* st[3]: no locations */
    st[4].location_indices = just_past;
    st[4].n_location_indices = 2;
    st[5].location_indices = negative;
    st[5].n_location_indices = 2;
    static const int32_t stack_of[] = {1, 2, 3, 1, 2, 4, 5};
    enum { NS = sizeof stack_of / sizeof *stack_of };
    Sample smp[NS], *smpp[NS];
    int64_t one = 1;
    for (int i = 0; i < NS; i++) {
        smpp[i] = one_count_sample(&smp[i], stack_of[i], &one);
    }
    Dict d = OPENTELEMETRY__PROTO__PROFILES__V1DEVELOPMENT__PROFILES_DICTIONARY__INIT;
    d.string_table = strings;
    d.n_string_table = sizeof strings / sizeof *strings;
    d.location_table = locp;
    d.n_location_table = NL;
    d.stack_table = stp;
    d.n_stack_table = 6;

    sp_arena *a = sp_arena_new(0);
    sp_batch b;
    convert_one(&d, smpp, NS, NULL, a, &b);
    assert_int_equal(b.nprofiles, 1);
    const sp_profile *p = b.profiles[0];
    assert_int_equal(p->nsamples, NS);
    const sp_sample *s = p->samples;
    assert_int_equal(s[0].nlocations, 5);
    for (uint32_t k = 0; k < 5; k++)
        assert_int_equal(s[0].location_ids[k], (uint32_t)in_range[k]);
    assert_int_equal(s[1].nlocations, sizeof want_out / sizeof *want_out);
    for (uint32_t k = 0; k < s[1].nlocations; k++)
        assert_int_equal(s[1].location_ids[k], want_out[k]);
    assert_int_equal(s[2].nlocations, 0);
    /* a stack's samples share one list */
    assert_ptr_equal(s[3].location_ids, s[0].location_ids);
    assert_int_equal(s[3].nlocations, s[0].nlocations);
    assert_ptr_equal(s[4].location_ids, s[1].location_ids);
    assert_int_equal(s[4].nlocations, s[1].nlocations);
    /* one index just past the table, or one negative, among good ones */
    assert_int_equal(s[5].nlocations, 2);
    assert_int_equal(s[5].location_ids[0], 2);
    assert_int_equal(s[5].location_ids[1], 0);
    assert_int_equal(s[6].nlocations, 2);
    assert_int_equal(s[6].location_ids[0], 0);
    assert_int_equal(s[6].location_ids[1], 3);
    sp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(locations_share_attribute_entries_and_keep_their_first_frame_type),
        cmocka_unit_test(samples_with_a_service_name_split_the_profile),
        cmocka_unit_test(stack_indices_become_location_ids_out_of_range_ones_0),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

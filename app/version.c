/* Build information (version.h). The library versions are asked of the libraries at run time
 * (the ones actually loaded), except where a library only offers its header's version. */
#include "version.h"
#include "version_build.h"  /* generated: SPANPROF_VERSION, SPANPROF_COMPILER */
#include "version_commit.h" /* generated at every build: SPANPROF_COMMIT */

#include "../common/metrics.h"

#include <event2/event.h>
#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <protobuf-c/protobuf-c.h>
#include <sqlite3.h>
#include <yaml.h>
#include <zlib.h>
#include <zstd.h>

const char *app_version(void)
{
    return SPANPROF_VERSION;
}

const char *app_commit(void)
{
    return SPANPROF_COMMIT;
}

static const char *nghttp2_v(void)
{
    nghttp2_info *i = nghttp2_version(0);
    return i && i->version_str ? i->version_str : "unknown";
}

/* "OpenSSL 3.0.15 3 Sep 2024" -> "3.0.15" */
static const char *openssl_v(void)
{
    return OpenSSL_version(OPENSSL_VERSION_STRING);
}

void app_version_print(FILE *out)
{
    fprintf(out,
            "spanprof %s\n"
            "commit:     %s\n"
            "compiler:   %s\n"
            "sqlite:     %s\n"
            "nghttp2:    %s\n"
            "openssl:    %s\n"
            "protobuf-c: %s\n"
            "libevent:   %s\n"
            "jansson:    %s\n"
            "libyaml:    %s\n"
            "zlib:       %s\n"
            "zstd:       %s\n",
            SPANPROF_VERSION, SPANPROF_COMMIT, SPANPROF_COMPILER, sqlite3_libversion(), nghttp2_v(),
            openssl_v(), protobuf_c_version(), event_get_version(), JANSSON_VERSION,
            yaml_get_version_string(), zlibVersion(), ZSTD_versionString());
}

void app_version_metric(void)
{
    char name[256];
    snprintf(name, sizeof name,
             "build_info{version=\"%s\",commit=\"%s\",compiler=\"%s\",sqlite=\"%s\","
             "nghttp2=\"%s\",openssl=\"%s\",protobuf_c=\"%s\"}",
             SPANPROF_VERSION, SPANPROF_COMMIT, SPANPROF_COMPILER, sqlite3_libversion(),
             nghttp2_v(), openssl_v(), protobuf_c_version());
    sp_metrics_gauge_set(name, 1);
}

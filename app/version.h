/* What this binary is: its version (CMake's project version), the git commit it was built from
 * (when built from a git checkout), the compiler and the versions of the libraries it runs with.
 * Printed by `spanprof --version` and served as the metric spanprof_build_info{...} 1. */
#ifndef APP_VERSION_H
#define APP_VERSION_H

#include <stdio.h>

/* The version and commit ("0.1.0", "1a2b3c4d5e6f" or "unknown"). */
const char *app_version(void);
const char *app_commit(void);
/* The multi-line answer to --version. */
void app_version_print(FILE *out);
/* Sets the gauge spanprof_build_info{version,commit,compiler,sqlite,nghttp2,openssl,
 * protobuf_c} to 1. */
void app_version_metric(void);

#endif

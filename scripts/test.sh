#!/usr/bin/env bash
# THE test command: installs dependencies, builds, and runs every test (unit, e2e) through ctest.
#   scripts/test.sh
#   BUILD_DIR=build-asan CMAKE_ARGS="-DSPANPROF_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug" scripts/test.sh
# BUILD_DIR is relative to the repository unless absolute (default: build). CMAKE_ARGS are extra
# cmake configure arguments, split on spaces.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
"$repo/scripts/install-deps.sh"

build_dir=${BUILD_DIR:-build}
read -r -a extra <<<"${CMAKE_ARGS:-}"

cmake -S "$repo" -B "$build_dir" -DSPANPROF_PYTHON="$repo/.venv/bin/python" "${extra[@]}"
cmake --build "$build_dir" -j "$(nproc)"
# The e2e suite builds Go programs (Jaeger v2 among them): download and compile them here, outside
# its time limit (a fresh machine's cold Go caches cost minutes; warm, seconds).
"$repo/scripts/prepare-go.sh"
exec ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j2

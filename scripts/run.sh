#!/usr/bin/env bash
# Builds spanprof (build/, optimised with debug info) and runs it with the given flags.
#   scripts/run.sh                       # HTTP on 0.0.0.0:4040, OTLP/gRPC on 0.0.0.0:4317, data in ./data
#   scripts/run.sh --help                # every flag with its default
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/install-deps.sh"
cmake -S "$repo" -B "$repo/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$repo/build" -j "$(nproc)" --target spanprof

# The default data dir is ./data (relative to where you run this): make it when no other is given.
data_dir_given=0
for a in "$@"; do
  case "$a" in --data-dir|--data-dir=*|-h|--help) data_dir_given=1 ;; esac
done
[ "$data_dir_given" = 1 ] || mkdir -p data

exec "$repo/build/spanprof" "$@"

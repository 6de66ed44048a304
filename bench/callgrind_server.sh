#!/usr/bin/env bash
# The server under valgrind's callgrind, for bench_ingest's --bin: instructions counted per
# function and per thread instead of time, which on a shared machine moves 10-15 % from run to
# run while the counts repeat to about 1 % (the writer's commit groups follow timing, so its
# thread varies by 2 %). About 40x slower: use --requests 100 or fewer.
#
#   SPANPROF_BIN=build/app/spanprof CALLGRIND_OUT=/tmp/cg.out \
#     build/bench/bench_ingest --bin bench/callgrind_server.sh --requests 100
#   callgrind_annotate --inclusive=yes /tmp/cg.out | grep -E 'thread_main|stage_main|writer_main'
#
# valgrind counts each byte of a rep movs / rep stos as an instruction, so memset and memcpy
# weigh several times what they cost in time: compare those with perf.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v valgrind >/dev/null || { echo "callgrind_server: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
exec valgrind --tool=callgrind --callgrind-out-file="${CALLGRIND_OUT:-callgrind.out}" \
  --dump-instr=no --collect-jumps=no "${SPANPROF_BIN:-$repo/build/app/spanprof}" "$@" \
  2>"${CALLGRIND_LOG:-/dev/null}"

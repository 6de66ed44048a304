#!/usr/bin/env bash
# Runs libFuzzer targets for a bounded time each and fails if any of them finds a crash, a leak,
# a timeout or an out-of-memory input.
#   tests/fuzz/campaign.sh BUILD_DIR SECONDS [TARGET ...]      (no TARGET = every built target)
# BUILD_DIR is a build configured with CC=clang -DSPANPROF_FUZZ=ON. Two targets run at a time
# (FUZZ_JOBS to change). New inputs that reach new code go to BUILD_DIR/tests/fuzz/corpus_<name>
# (kept between runs, never into the committed seeds); a failing input is written to
# BUILD_DIR/fuzz-artifacts/<target>/ and printed in base64 with the target's log.
# tests/fuzz/README.md says how a failing input becomes a committed regression.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:?usage: campaign.sh BUILD_DIR SECONDS [TARGET ...]}"
seconds="${2:?usage: campaign.sh BUILD_DIR SECONDS [TARGET ...]}"
shift 2
bin="$build/tests/fuzz"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$bin"/fuzz_*; do
    [ -x "$f" ] && [ -f "$f" ] && targets+=("$(basename "$f")")
  done
fi
[ ${#targets[@]} -gt 0 ] || { echo "no fuzz targets in $bin" >&2; exit 1; }

run_one() {
  local t="$1" name="${1#fuzz_}"
  local seeds="$here/corpus/$name" scratch="$bin/corpus_$name" art="$build/fuzz-artifacts/$t"
  mkdir -p "$scratch" "$art"
  local log="$art/log"
  # -rss_limit_mb: a target that grows past 2 GiB is a finding; -timeout: one input over 10 s is
  # a hang. Detached leaks are reported at exit by ASan (detect_leaks).
  if "$bin/$t" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$art/" "$scratch" "$seeds" >"$log" 2>&1; then
    echo "ok   $t: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs in ${seconds}s"
    return 0
  fi
  echo "FAIL $t (log: $log)"
  grep -E -A30 'ERROR|runtime error|SUMMARY|deadly signal' "$log" | head -60
  for f in "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-* "$art"/slow-unit-*; do
    [ -f "$f" ] && echo "input $f (base64): $(base64 -w0 "$f")"
  done
  return 1
}
export -f run_one
export here bin build seconds

printf '%s\n' "${targets[@]}" | xargs -P "${FUZZ_JOBS:-2}" -I{} bash -c 'run_one "$@"' _ {}

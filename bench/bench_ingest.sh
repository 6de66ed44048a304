#!/usr/bin/env bash
# End-to-end ingest through the real binary: h2load (Debian's nghttp2-client, an HTTP/2 load
# generator nobody here wrote) posts one eBPF-like OTLP profiles export over gRPC again and again
# on C connections; spanprof decodes, converts, correlates and commits each before answering.
# Prints requests/s, observations/s, MB/s and the server's peak RSS.
#
#   bench/bench_ingest.sh [requests] [connections] [processes] [threads]    (build/ must exist)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
n=${1:-200} c=${2:-4} procs=${3:-20} threads=${4:-8}
bin=${SPANPROF_BIN:-$repo/build/spanprof}
py=${SPANPROF_PYTHON:-$repo/.venv/bin/python}
command -v h2load >/dev/null || { echo "bench_ingest: needs h2load (apt-get install nghttp2-client)"; exit 2; }
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
obs=$("$py" "$repo/bench/make_ebpf_request.py" "$work/req.grpc" "$procs" "$threads")
bytes=$(stat -c %s "$work/req.grpc")
port=$(( 20000 + RANDOM % 20000 ))
"$bin" --data-dir "$work/data" --http-addr 127.0.0.1:$((port + 1)) --grpc-addr 127.0.0.1:$port \
  --log-level warn &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((port + 1))/ready" >/dev/null && break; sleep 0.1; done
out=$(h2load -n "$n" -c "$c" -m 1 -d "$work/req.grpc" \
  -H 'content-type: application/grpc' -H 'te: trailers' \
  "http://127.0.0.1:$port/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export")
ok=$(echo "$out" | sed -n 's/.*status codes: \([0-9]*\) 2xx.*/\1/p')
secs=$(echo "$out" | sed -n 's/^finished in \([0-9.]*\)s.*/\1/p')
rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
# Server CPU (user + sys) in clock ticks: the machine is shared, so CPU per observation is the
# figure that does not depend on what else runs.
ticks=$(awk '{print $14 + $15}' /proc/$pid/stat)
hz=$(getconf CLK_TCK)
grpc_ok=$(curl -s "http://127.0.0.1:$((port + 1))/metrics" |
  sed -n 's/^spanprof_requests_total{endpoint="otlp_grpc_profiles",code="OK"} //p')
db=$(du -sb "$work/data" | cut -f1)
echo "request: $obs observations, $bytes bytes (gRPC frame); $n requests on $c connections"
echo "answered OK: ${grpc_ok:-0} of $n (HTTP 2xx: $ok)"
awk -v n="$n" -v s="$secs" -v o="$obs" -v b="$bytes" 'BEGIN {
  printf "requests/s: %.1f\nobservations/s: %.0f\nMB/s of OTLP: %.1f\n", n/s, n*o/s, n*b/s/1e6 }'
awk -v t="$ticks" -v hz="$hz" -v n="$n" -v o="$obs" -v s="$secs" 'BEGIN {
  printf "server CPU: %.2f s = %.3f us per observation (%.0f observations per CPU-second; %.2f cores busy)\n",
    t/hz, t/hz*1e6/(n*o), n*o/(t/hz), t/hz/s }'
echo "server peak RSS: $((rss / 1024)) MiB; data dir: $((db / 1024 / 1024)) MiB"

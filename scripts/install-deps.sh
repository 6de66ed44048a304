#!/usr/bin/env bash
# Installs what building and testing spanprof needs, and nothing when it is all there already:
#   - Debian packages (apt-get; sudo only when not root), installed only if some are missing;
#   - <repo>/.venv with the end-to-end test clients of tests/e2e/requirements.txt, (re)installed
#     only when the venv is missing or broken, or the requirements file changed since;
#   - the Pyroscope Java agent jar (Maven Central, via mvn) for the Java agent's e2e test;
#   - tests/browser/node_modules (npm ci of its package-lock.json: playwright-core) for the page's
#     browser test, and tests/node/node_modules (the OpenTelemetry JS SDK and its OTLP/HTTP JSON
#     exporter) for tests/e2e/test_otlp_json_node.py, when node and npm are there, (re)installed
#     only when missing or the lock changed.
# Safe to run any number of times; scripts/run.sh and scripts/test.sh call it first.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(
  build-essential cmake pkg-config
  libnghttp2-dev libevent-dev libssl-dev libprotobuf-c-dev protobuf-c-compiler
  zlib1g-dev libzstd-dev libsqlite3-dev libcmocka-dev libhttp-parser-dev libjansson-dev
  libcurl4-openssl-dev curl openssl python3-venv
  # the config file (--config)
  libyaml-dev
  # naming native frames: elfutils (ELF, DWARF, debuginfod client), libiberty's demangler; the
  # symbolization tests run Debian's real debuginfod server
  libdw-dev libelf-dev libdebuginfod-dev libiberty-dev debuginfod
  # the page's browser test (tests/e2e/test_page_browser.py) drives Debian's chromium
  chromium
)
# The golden and Pyroscope round-trip tests read profiles with Go's own `go tool pprof` and write
# them with Go's runtime/pprof: Debian's Go when the machine has no Go toolchain of its own.
if ! command -v go >/dev/null 2>&1 && ! [ -x /usr/local/go/bin/go ]; then
  packages+=(golang-go)
fi
# Fuzz targets (libFuzzer) need clang and its runtime: only asked for by .ci/run's fuzz step.
if [ "${SPANPROF_FUZZ_DEPS:-0}" = 1 ]; then
  packages+=(clang libclang-rt-14-dev)
fi

installed() {
  dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'
}

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
  fi
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ---- Python venv for tests/e2e ----------------------------------------------------------------------
venv="$repo/.venv"
req="$repo/tests/e2e/requirements.txt"
stamp="$venv/.requirements.sha256"
# Debian's interpreter is the one python3-venv above makes venvs for; fall back to PATH.
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)

# ---- the Pyroscope Java agent (tests/e2e/test_java_agent.py runs it) -------------------------------
# From Maven Central through the machine's Maven, into the local repository (~/.m2); only when
# Java and Maven are there (the test skips otherwise) and the jar is not there yet.
# The same test runs the OpenTelemetry Java agent with Pyroscope's extension (io.pyroscope:otel) on
# a program built against the OpenTelemetry API.
java_artifacts=(io.pyroscope:agent:2.9.2 io.pyroscope:otel:1.0.2
  io.opentelemetry.javaagent:opentelemetry-javaagent:2.10.0
  io.opentelemetry:opentelemetry-api:1.44.1 io.opentelemetry:opentelemetry-context:1.44.1)
m2="$HOME/.m2/repository"
if [ "${SPANPROF_SKIP_JAVA_AGENT:-0}" != 1 ] && command -v mvn >/dev/null 2>&1 \
   && command -v java >/dev/null 2>&1; then
  for a in "${java_artifacts[@]}"; do
    IFS=: read -r g n v <<<"$a"
    [ -f "$m2/${g//.//}/$n/$v/$n-$v.jar" ] && continue
    echo "install-deps: mvn dependency:get $a"
    mvn -q -B dependency:get -Dartifact="$a" -Dtransitive=false \
      || echo "install-deps: could not fetch $a; the Java agent tests that need it are skipped"
  done
fi

# ---- node_modules: playwright-core (tests/browser), the OpenTelemetry JS SDK (tests/node) ----------
# As the venv below: `npm ci` from the committed package-lock.json when node_modules is missing or
# was made from another lock file (its hash is kept in a stamp). Only when node and npm are there:
# without them the test skips and says why. playwright-core downloads no browser; the test uses
# the chromium package above.
npm_ci() { # dir, a file node_modules must have
  local dir=$1 stamp="$1/node_modules/.package-lock.sha256" want
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if ! [ -f "$dir/node_modules/$2" ] || ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "install-deps: npm ci in ${dir#"$repo"/}"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
  fi
}
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  npm_ci "$repo/tests/browser" playwright-core/package.json
  npm_ci "$repo/tests/node" @opentelemetry/exporter-trace-otlp-http/package.json
fi

want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' 2>/dev/null \
   && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  echo "install-deps: creating $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi
echo "install-deps: pip install -r tests/e2e/requirements.txt"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"

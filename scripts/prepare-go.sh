#!/usr/bin/env bash
# Prepares the Go programs the end-to-end tests build (tests/e2e/go*/ with a go.mod): downloads
# their modules from the Go module proxy and compiles each once, so the machine's Go module and
# build caches hold them and the suite's fixtures build them in seconds. A fresh machine pays the
# cold cost here, outside the e2e suite's time limit (ctest TIMEOUT): Jaeger v2
# (tests/e2e/gojaeger, github.com/jaegertracing/jaeger/cmd/jaeger v1.75.0) is most of it, about
# 2.5 min of downloads and 8 min of compiling on a 2-core machine; warm, everything takes seconds.
# Without a Go toolchain it does nothing (the Go-based tests skip). scripts/test.sh runs it.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
go=$(command -v go || echo /usr/local/go/bin/go)
if ! [ -x "$go" ]; then
  echo "prepare-go: no Go toolchain; the Go-based e2e tests will skip"
  exit 0
fi
export GOFLAGS=-mod=mod

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for mod in "$repo"/tests/e2e/go*/; do
  [ -f "$mod/go.mod" ] || continue
  name=$(basename "$mod")
  start=$SECONDS
  # A module holding only a tool directive (gojaeger) builds its tool; the others their main.
  if grep -q '^tool ' "$mod/go.mod"; then
    pkgs=$(sed -n 's/^tool[[:space:]]\+//p' "$mod/go.mod")
  else
    pkgs=.
  fi
  for pkg in $pkgs; do
    (cd "$mod" && nice "$go" build -o "$tmp/$name.bin" "$pkg")
  done
  # compile its tests too (gopyro has some): go vet builds them without running anything
  if compgen -G "$mod/*_test.go" >/dev/null; then
    (cd "$mod" && nice "$go" vet .)
  fi
  echo "prepare-go: $name ready in $((SECONDS - start)) s"
done

#!/usr/bin/env python3
"""The house rules, read from the code itself (docs/ARCHITECTURE.md draws the same picture):

1. Each room (top-level folder of production C) includes only the rooms the table below allows,
   which are all below it: no arrow runs back up and no two rooms include each other.
2. No production .c file is over 1,200 lines.
3. No function is over 120 lines unless the comment right above it says why ("Long because ...").

Prints the rooms with their lines and what each uses; exits 1 on any breach, naming it.
    python3 tests/tools/rooms.py [repo]
"""
import os
import re
import sys

# room -> rooms it may include (besides itself). proto: the generated protobuf-c headers.
ALLOWED = {
    "common": set(),
    "wire": {"common"},
    "server": {"common"},
    "correlator": {"common"},
    "storage-adapter": {"common"},
    "delivery": {"common", "wire"},
    "symbolizer": {"common"},
    "otlp": {"common", "wire", "server", "proto"},
    "query": {"common", "wire", "server", "storage-adapter", "proto"},
    "app": {"common", "wire", "server", "correlator", "storage-adapter", "delivery", "otlp",
            "query", "symbolizer"},
}
PROTO_PREFIXES = ("opentelemetry/", "pprof/", "google/", "push/", "querier/", "types/")
MAX_FILE_LINES = 1200
MAX_FUNCTION_LINES = 120

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
FUNC_START = re.compile(r'^[A-Za-z_][^;]*\)\s*$')


def room_of_include(room, path):
    if path.startswith(PROTO_PREFIXES):
        return "proto"
    if path.startswith("../"):
        return path[3:].split("/", 1)[0]
    if "/" in path:
        return path.split("/", 1)[0]
    return room


def long_functions(lines):
    """(name, first line, length, has reason) of functions longer than the limit: a definition is
    a line at column 0 ending in ')' followed by a '{' line at column 0, up to the '}' at
    column 0."""
    out = []
    i = 0
    while i < len(lines) - 1:
        if FUNC_START.match(lines[i]) and lines[i + 1].rstrip() == "{":
            j = i + 2
            while j < len(lines) and lines[j].rstrip() != "}":
                j += 1
            n = j - i + 1
            if n > MAX_FUNCTION_LINES:
                above = "\n".join(lines[max(0, i - 12):i])
                m = re.search(r"(\w+)\s*\(", lines[i])
                out.append((m.group(1) if m else lines[i], i + 1, n, "Long because" in above))
            i = j
        i += 1
    return out


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    problems, uses, sizes = [], {r: set() for r in ALLOWED}, {r: 0 for r in ALLOWED}
    for room in ALLOWED:
        d = os.path.join(repo, room)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if not name.endswith((".c", ".h")):
                continue
            with open(os.path.join(d, name), encoding="utf-8") as f:
                lines = f.read().split("\n")
            sizes[room] += len(lines)
            if name.endswith(".c") and len(lines) > MAX_FILE_LINES:
                problems.append(f"{room}/{name}: {len(lines)} lines (limit {MAX_FILE_LINES})")
            for fn, at, n, reason in long_functions(lines):
                if not reason:
                    problems.append(f"{room}/{name}:{at}: {fn}() is {n} lines (limit "
                                    f"{MAX_FUNCTION_LINES}) and the comment above it gives no "
                                    "reason (\"Long because ...\")")
            for k, line in enumerate(lines):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = room_of_include(room, m.group(1))
                if target == room:
                    continue
                uses[room].add(target)
                if target not in ALLOWED[room]:
                    problems.append(f"{room}/{name}:{k + 1}: includes {m.group(1)} ({target}/ is "
                                    f"not below {room}/)")
    for room in ALLOWED:
        print(f"{room:16} {sizes[room]:6} lines  uses: {', '.join(sorted(uses[room])) or '-'}")
    for p in problems:
        print("BREACH:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Prints the README's settings table from `spanprof --help` (every flag, its variable, its
default and what it does); with --check README.md, exits 1 when the README's table differs.

    build/app/spanprof --help | scripts/settings_table.py            # the table
    build/app/spanprof --help | scripts/settings_table.py --check README.md
"""
import re
import sys

LINE = re.compile(r'^  --(\S+)( V)?\s+(.*?)(?: \(default "(.*)", \$(\w+)\))?$')
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def table(help_text):
    rows = ["| setting | variable | default | what |", "| --- | --- | --- | --- |"]
    started = False
    for line in help_text.splitlines():
        if line.startswith("flags:"):
            started = True
            continue
        m = LINE.match(line) if started else None
        if not m or m.group(1) in ("help", "version"):
            continue
        name, takes, what, default, var = m.groups()
        what = what.replace("|", "\\|")
        rows.append(f"| `--{name}` | `{var or ''}` | {'`' + default + '`' if default else '—'} | {what} |")
    return "\n".join(rows)


def main():
    text = table(sys.stdin.read())
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        readme = open(sys.argv[2]).read()
        inside = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip() if BEGIN in readme else ""
        if inside != text:
            sys.exit(f"{sys.argv[2]}: the settings table differs from --help; regenerate it with "
                     f"scripts/settings_table.py")
        return
    print(text)


if __name__ == "__main__":
    main()

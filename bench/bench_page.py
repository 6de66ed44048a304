#!/usr/bin/env python3
"""bench_page: how long the page's trace view takes to draw a 500-span trace in a real browser
(Debian's chromium driven by tests/browser/page_driver.js, playwright-core), after the trace's
answer arrived: performance.now() around the render, layout included, for cold page loads and
for re-renders. The trace (a 6-level tree of 500 spans, some under the minimum duration) goes into
the real binary over OTLP as the browser test loads it (tests/e2e/test_page_browser.py).

    SPANPROF_BIN=build/app/spanprof .venv/bin/python bench/bench_page.py [--loads 5] [--runs 10]

Prints every sample and the median; the issue's target is under 200 ms.
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import conftest  # noqa: E402  (the e2e suite's server fixture class)
import test_page_browser as page  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    try:
        node = page.browser_or_skip()
    except BaseException as e:  # pytest.skip outside pytest
        sys.exit(f"bench_page: {e}")
    with tempfile.TemporaryDirectory(prefix="bench_page_") as tmp:
        server = conftest.Spanprof(Path(tmp) / "server").start()
        try:
            spans = page.load_big(server)
            res = page.drive(node, server, Path(tmp), mode="big", trace=page.BIG.hex(),
                             loads=args.loads, runs=args.runs)
        finally:
            server.stop()
    cold = [c["ms"] for c in res["cold"]]
    warm = [r["render_ms"] for r in res["runs"]]
    print(f"bench_page: {len(spans)} spans drawn ({res['rows']} rows), chromium "
          f"{res['browser_version']}")
    print(f"cold page loads (ms): {', '.join(f'{x:.1f}' for x in cold)}; "
          f"median {statistics.median(cold):.1f}")
    print(f"re-renders (ms):      {', '.join(f'{x:.1f}' for x in warm)}; "
          f"median {statistics.median(warm):.1f}")


if __name__ == "__main__":
    main()

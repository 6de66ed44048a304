"""Where does the demo's sampler stamp the CPU a step used, when its server is slow?

Runs examples/demo/demo.py's workers and Sampler in this process for a few seconds, without a
server: Sampler.send (the POST) is replaced by one that keeps the CPU samples and then sleeps
--slow seconds, as a POST to a busy server does. The oracle is independent of the sampler: each
step's wall interval and its thread's CPU clock (time.thread_time_ns) read around it. Prints one
JSON object: per kind of step, how many there were, the CPU they used and the CPU the sampler
stamped inside them (a sample counts for a step when its thread id matches and its timestamp
falls in the step's interval).

    python tests/e2e/demo_sampler_probe.py --seconds 6 --slow 0.3
"""
import argparse
import bisect
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "demo.py"
CPU_STEPS = {"compute_prices", "search_catalog", "render_report"}
SLEEP_STEPS = {"load_cart", "charge_card", "load_orders", "write_report", "fetch_inventory"}


def load_demo():
    spec = importlib.util.spec_from_file_location("spanprof_demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--slow", type=float, default=0.3, help="seconds each export takes")
    args = ap.parse_args()
    demo = load_demo()

    steps, lock = [], threading.Lock()  # (tid, name, wall start, wall end, CPU used)

    def step(name, fn, *a):
        tid, c0, t0 = threading.get_native_id(), time.thread_time_ns(), time.time_ns()
        try:
            return fn(*a)
        finally:
            t1, c1 = time.time_ns(), time.thread_time_ns()
            with lock:
                steps.append((tid, name, t0, t1, c1 - c0))

    stamps = {}  # tid -> CPU sample timestamps

    def send(self, cpu, offcpu, start_ns, end_ns):
        self.build_request(cpu, offcpu, start_ns, end_ns)  # the work a real export does
        for (tid, _name, _stack), ts in cpu.items():
            stamps.setdefault(tid, []).extend(ts)
        time.sleep(args.slow)

    demo.step = step
    demo.Sampler.send = send
    sampler = demo.Sampler("http://127.0.0.1:9", 97, 1, {})
    sampler.start()
    stop, requests = threading.Event(), demo.Requests()
    workers = [threading.Thread(target=demo.worker, args=(stop, requests, i)) for i in range(4)]
    for w in workers:
        w.start()
    time.sleep(args.seconds)
    stop.set()
    for w in workers:
        w.join()
    sampler.stop()

    for ts in stamps.values():
        ts.sort()
    out = {"period_ns": sampler.period_ns, "cpu": [], "sleep": []}
    for tid, name, t0, t1, used in steps:
        ts = stamps.get(tid, [])
        stamped = (bisect.bisect_right(ts, t1) - bisect.bisect_left(ts, t0)) * sampler.period_ns
        kind = "cpu" if name in CPU_STEPS else "sleep" if name in SLEEP_STEPS else None
        if kind:
            out[kind].append({"name": name, "used_ns": used, "stamped_ns": stamped})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

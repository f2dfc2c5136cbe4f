"""z.ask against `zocalo ask --json` for the same question, against the testkit's fake
provider, side by side in one run (docs/BENCHMARKS.md, "Python package").

    python python/bench/ask_overhead.py --fake-llm PATH --cli PATH [--runs 20]

Three ways to ask the same question (tools off, a fresh conversation each time, one
SQLite data home):
- z.ask, warm: one Zocalo in this process, asked N times (what a Python program pays per call);
- python cold: a new interpreter per ask (`import zocalo; Zocalo().ask(...)`);
- CLI: a new `zocalo ask --json` process per ask.
Prints the median and p90 of each, in ms.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

QUESTION = "What is the capital of France?"
COLD = "import zocalo; zocalo.Zocalo().ask(%r, tools=False)" % QUESTION


def timed(fn, runs):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fake-llm", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()

    fake = subprocess.Popen([args.fake_llm], stdout=subprocess.PIPE, text=True)
    url = fake.stdout.readline().split(" ", 1)[1].strip()
    home = tempfile.mkdtemp(prefix="zocalo-bench-")
    os.environ.update(
        ZOCALO_HOME=home,
        OPENAI_API_KEY="sk-bench",
        OPENAI_BASE_URL=url + "/v1",
        ZOCALO_PROVIDER="openai",
        ZOCALO_MODEL="zocalo-fake",
        ZOCALO_EMBEDDER="none",
    )
    import zocalo

    z = zocalo.Zocalo()
    z.ask("warm up", tools=False)
    cli = [args.cli, "ask", "--json", "--no-tools", QUESTION]
    subprocess.run(cli, check=True, capture_output=True)
    rows = []
    # Interleaved, so drift on a shared machine hits all three alike.
    warm, cold, proc = [], [], []
    for _ in range(args.runs):
        warm += timed(lambda: z.ask(QUESTION, tools=False), 1)
        cold += timed(lambda: subprocess.run([sys.executable, "-c", COLD], check=True, capture_output=True), 1)
        proc += timed(lambda: subprocess.run(cli, check=True, capture_output=True), 1)
    for name, xs in (("z.ask (warm, in process)", warm), ("python -c (import + Zocalo() + ask)", cold), ("zocalo ask --json (CLI process)", proc)):
        xs.sort()
        rows.append((name, statistics.median(xs), xs[int(0.9 * (len(xs) - 1))]))
    fake.kill()
    print(f"{args.runs} runs each, interleaved; fake provider on loopback, SQLite, tools off")
    print(f"{'':40} {'median ms':>10} {'p90 ms':>10}")
    for name, med, p90 in rows:
        print(f"{name:40} {med:10.1f} {p90:10.1f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Soak run (issue 11): many short tasks on the real Docker Engine, in waves,
against the fixture host on loopback, sampling the runner's resident memory,
open file descriptors and SQLite state size after every few waves. Nothing
should grow: the figures at the end are compared with those after warm-up.

Hold the e2e lock exclusively while it runs (it is long and loads dockerd):
  flock -x /tmp/kr-e2e.lock bench/soak.py --tasks 10000 --wave 50

Usage: bench/soak.py [--tasks 10000] [--wave 50] [--sample-every 10] [--binary build/kohakuriver]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))
from fixture_host import FixtureHost  # noqa: E402
from tasks_bench import Runner  # noqa: E402


def sample(runner, tmp: Path):
    pid = runner.proc.pid
    rss = runner.rss_mib()
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    db = sum(p.stat().st_size for p in (tmp / "state").glob("runner-state.db*"))
    return rss, fds, db / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(REPO / "build" / "kohakuriver"))
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--wave", type=int, default=50)
    ap.add_argument("--sample-every", type=int, default=10, help="waves between samples")
    args = ap.parse_args()

    host = FixtureHost().start()
    tmp = Path(tempfile.mkdtemp(prefix="kr-soak-"))
    runner = Runner(tmp, host, args.binary)
    samples = []  # (tasks done, rss MiB, fds, db KiB)
    start = time.monotonic()
    failed = 0
    try:
        samples.append((0, *sample(runner, tmp)))
        print(f"{'tasks':>7} {'RSS MiB':>8} {'fds':>5} {'db KiB':>8} {'tasks/s':>8}", flush=True)
        print(f"{0:>7} {samples[0][1]:>8.2f} {samples[0][2]:>5} {samples[0][3]:>8.0f}", flush=True)
        done = 0
        wave_no = 0
        while done < args.tasks:
            n = min(args.wave, args.tasks - done)
            tids = [runner.submit("true") for _ in range(n)]
            runner.wait_final(tids, timeout=600)
            done += n
            wave_no += 1
            # Task logs are the host's business; keep the disk flat too.
            shutil.rmtree(runner.share / "logs", ignore_errors=True)
            (runner.share / "logs").mkdir()
            if wave_no % args.sample_every == 0 or done >= args.tasks:
                time.sleep(0.5)  # let the last removals and outbox deliveries settle
                s = (done, *sample(runner, tmp))
                samples.append(s)
                rate = done / (time.monotonic() - start)
                print(f"{s[0]:>7} {s[1]:>8.2f} {s[2]:>5} {s[3]:>8.0f} {rate:>8.1f}", flush=True)
        bad = [u for u in (r.json() for r in host.of_kind("update")) if u["status"] in ("failed", "stopped")]
        failed = len(bad)
        # Why each one failed, grouped: a soak is only useful if failures are explained.
        reasons = {}
        for u in bad:
            key = (u["status"], u.get("exit_code"), (u.get("message") or "")[:200])
            reasons.setdefault(key, []).append(u["task_id"])
        for (status, code, msg), ids in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
            print(f"{len(ids):>5} x {status} exit_code={code}: {msg}  (e.g. task {ids[0]})")
    finally:
        runner.stop()
        host.stop()
        if failed:
            print(f"runner state and log kept in {tmp} (failed reports)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    # Compare the end with the state after warm-up (the first 20% of samples
    # after the initial one: caches, pools and SQLite pages settle there).
    body = samples[1:]
    k = max(1, len(body) // 5)
    early, late = body[:k], body[-k:]
    verdicts = []
    for idx, name, slack in ((1, "RSS MiB", 2.0), (2, "open fds", 2), (3, "SQLite KiB", 256)):
        a = statistics.median(x[idx] for x in early)
        b = statistics.median(x[idx] for x in late)
        verdicts.append(b - a <= slack)
        print(f"{name}: {a:.2f} after warm-up, {b:.2f} at the end ({b - a:+.2f}; allowed +{slack}) -> "
              f"{'flat' if b - a <= slack else 'GROWS'}")
    elapsed = time.monotonic() - start
    print(f"{args.tasks} tasks in {elapsed:.0f} s ({args.tasks / elapsed:.1f} tasks/s), "
          f"{failed} failed/stopped reports")
    return 0 if all(verdicts) and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

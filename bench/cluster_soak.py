#!/usr/bin/env python3
"""Fault-injection soak against the cluster that `scripts/cluster.sh up`
started (issue 19).

    bench/cluster_soak.py [--minutes M] [--seed S] [--fault-every SECONDS]

For M minutes it dispatches a seeded random mix of work across the nodes
through the fixture host (short tasks with chosen exit codes, long tasks,
tasks killed or paused/resumed by request, Docker VPS created and stopped)
and injects faults at random intervals: runner SIGKILL + restart, dockerd
restart, a node's underlay link down past the host's heartbeat timeout,
the host process down. Then it waits for every task to end and checks:
  * mismatches: the host's last status (and exit code) of each task is its
    true outcome: the exit code its command chose, `killed` for a kill
    request the runner answered 200, `stopped` for a stopped VPS; a task
    whose node's dockerd restarted while it ran may instead be `failed`
    with a non-zero exit code (D11); a task may not end `lost`;
    differing final reports for one task also count;
  * leaks: per node, containers the host does not know as running,
    kohakuriver veths beyond the running containers' endpoints, snapshot
    images of unknown VPS ids or beyond MAX_SNAPSHOTS_PER_VPS (3), host
    overlay reservations still held;
  * rss_drift_mib / fd_drift: per runner, last sample minus the first after
    warm-up (since the runner's last restart);
  * the overlay: a container on node 1 pings a container on every node.
The last line is one JSON object; the exit code is non-zero when
`mismatches` or `leaks` is not 0. The same seed replays the same schedule
(the timing of the machine still varies).
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from clusterutil import (HOST, cluster, container_name, create_vps, node, node_docker,  # noqa: E402
                         overlay_ip, run_sh, runner_call, state, wait_status)
from taskutil import http  # noqa: E402

FINAL = {"completed", "failed", "killed", "killed_oom", "stopped", "lost"}


def control(k: int, action: str, tid: int):
    """/api/kill|pause|resume as the host sends them."""
    return runner_call(k, "POST", f"/api/{action}", {"task_id": tid, "container_name": container_name(tid)})


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.nodes = sorted(int(n.removeprefix("krc-n")) for n in state()["nodes"])
        self.expect: dict[int, dict] = {}  # task id -> {"node", "kind", "status", "exit", "t0", "alt"}
        self.faults: Counter = Counter()
        self.pending: list[tuple[float, str, int]] = []  # (due, action, task id)
        self.restarted_at = {k: time.monotonic() for k in self.nodes}
        self.samples: dict[int, list[tuple[float, int, int]]] = {k: [] for k in self.nodes}
        self.reservations_before = set(state()["reservations"])

    def note(self, msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    # ---- work
    def submit(self):
        k = self.rng.choice(self.nodes)
        kind = self.rng.choices(["short", "long", "kill", "pause", "vps"], [5, 2, 2, 1, 1])[0]
        try:
            if kind == "short":
                code = self.rng.choice([0, 0, 1, 7])
                tid = run_sh(k, f"sleep {self.rng.randint(1, 5)}; exit {code}")
                self.expect[tid] = {"node": k, "kind": kind, "status": "completed" if code == 0 else "failed",
                                    "exit": code}
            elif kind == "long":
                tid = run_sh(k, f"sleep {self.rng.randint(20, 60)}")
                self.expect[tid] = {"node": k, "kind": kind, "status": "completed", "exit": 0}
            elif kind == "kill":
                tid = run_sh(k, "sleep 120")
                self.expect[tid] = {"node": k, "kind": kind, "status": None, "exit": None}
                self.pending.append((time.monotonic() + self.rng.uniform(3, 15), "kill", tid))
            elif kind == "pause":
                tid = run_sh(k, "sleep 12")
                self.expect[tid] = {"node": k, "kind": kind, "status": "completed", "exit": 0}
                self.pending.append((time.monotonic() + self.rng.uniform(3, 5), "pause", tid))
            else:
                tid = create_vps(k)
                self.expect[tid] = {"node": k, "kind": kind, "status": "stopped", "exit": None}
                self.pending.append((time.monotonic() + self.rng.uniform(10, 40), "vps-stop", tid))
        except AssertionError as e:  # dispatch refused (node down): the host recorded it failed
            self.note(f"dispatch of {kind} to node {k} refused: {str(e)[:200]}")
            return
        self.expect[tid]["t0"] = time.monotonic()
        self.expect[tid]["alt"] = False

    def due_actions(self):
        now = time.monotonic()
        due = [p for p in self.pending if p[0] <= now]
        self.pending = [p for p in self.pending if p[0] > now]
        for _, action, tid in due:
            e = self.expect[tid]
            k = e["node"]
            if action in ("kill", "vps-stop") and not self.runner_up(k):
                self.pending.append((now + 5, action, tid))
            elif action == "kill":
                # The host marks it `killed` and tells the runner (upstream).
                status, body = http("POST", f"{HOST}/cluster/kill/{tid}")
                if status == 200 and body["runner_status"] == 200:
                    e["status"] = "killed"
                elif status == 200:  # marked killed, runner not told: it runs to its end
                    e["status"], e["exit"] = "completed", 0
                elif status == 409 and self.host_status(tid) == "lost":
                    self.pending.append((now + 5, action, tid))  # not killable while lost
                else:
                    e["status"], e["exit"] = "completed", 0
            elif action == "pause":
                status, _ = control(k, "pause", tid)
                if status == 200:
                    self.pending.append((now + 2, "resume", tid))
            elif action == "resume":
                status, _ = control(k, "resume", tid)
                if status != 200:
                    self.pending.append((now + 5, "resume", tid))
            elif action == "vps-stop":
                status, body = http("POST", f"{HOST}/cluster/vps-stop/{tid}", timeout=150)
                if status == 409 and self.host_status(tid) == "lost" and now < e["t0"] + 900:
                    self.pending.append((now + 5, action, tid))  # lost until the runner re-reports it
                elif status != 200 or body["runner_status"] != 200:
                    self.note(f"VPS {tid} stop: HTTP {status} {body}")

    def runner_up(self, k: int) -> bool:
        n = state()["nodes"].get(node(k), {})
        if n.get("status") != "online":
            return False
        status, _ = http("GET", f"{n['url']}/healthz", timeout=3)
        return status == 200

    @staticmethod
    def host_status(tid: int):
        t = state()["tasks"].get(str(tid))
        return t and t["status"]

    # ---- faults
    def fault(self):
        k = self.rng.choice(self.nodes)
        kind = self.rng.choice(["runner-kill", "dockerd-restart", "link-down", "host-down"])
        self.faults[kind] += 1
        self.note(f"fault {kind} on node {k}")
        if kind == "runner-kill":
            cluster("runner-kill", k)
            time.sleep(self.rng.uniform(1, 8))
            cluster("runner-start", k)
            self.restarted_at[k] = time.monotonic()
            self.samples[k] = []
        elif kind == "dockerd-restart":
            now = time.monotonic()
            for e in self.expect.values():  # whatever runs there may die with dockerd
                if e["node"] == k and e["kind"] != "vps" and e["t0"] <= now:
                    e["alt"] = True
            cluster("dockerd-restart", k)
        elif kind == "link-down":
            cluster("link", k, "down")
            time.sleep(state()["timeout"] + self.rng.uniform(4, 10))
            cluster("link", k, "up")
        else:
            cluster("host-stop")
            time.sleep(self.rng.uniform(10, 60))
            cluster("host-start")

    def sample(self):
        for k in self.nodes:
            pid = Path(f"/run/krc/n{k}/runner.pid")
            try:
                p = int(pid.read_text())
                rss = next(int(line.split()[1]) for line in Path(f"/proc/{p}/status").read_text().splitlines()
                           if line.startswith("VmRSS"))
                fds = len(list(Path(f"/proc/{p}/fd").iterdir()))
            except (OSError, ValueError, StopIteration):
                continue
            if time.monotonic() - self.restarted_at[k] >= 60:
                self.samples[k].append((time.monotonic(), rss, fds))

    # ---- end
    def settle(self):
        give_up = time.monotonic() + 600
        while self.pending and time.monotonic() < give_up:
            time.sleep(1)
            self.due_actions()
        deadline = time.monotonic() + 300
        for tid, e in self.expect.items():
            if e["kind"] == "kill" and e["status"] == "completed":
                # Killed at the host while `pending` (upstream tells the
                # runner only for running/paused tasks): the host shows
                # `killed` at once, but the command runs to its end and the
                # runner's `completed` follows. Wait for that report.
                while time.monotonic() < deadline:
                    t = state()["tasks"].get(str(tid)) or {"history": []}
                    if any(h.get("by") != "host" and h["status"] in FINAL for h in t["history"]):
                        break
                    time.sleep(1)
                continue
            try:
                wait_status(tid, FINAL - {"lost"}, timeout=max(1, deadline - time.monotonic()))
            except AssertionError:
                pass

    def check(self) -> tuple[list, list]:
        tasks = state()["tasks"]
        mismatches = []
        for tid, e in self.expect.items():
            t = tasks.get(str(tid))
            if t is None:
                mismatches.append((tid, "unknown to the host"))
                continue
            ok = t["status"] == e["status"] and (e["exit"] is None or t["exit_code"] == e["exit"])
            if not ok and e["alt"]:
                ok = t["status"] == "failed" and t["exit_code"] not in (None, 0)
            finals = {(h["status"], h.get("exit_code")) for h in t["history"]
                      if h.get("by") != "host" and h["status"] in FINAL}
            if len(finals) > 1:
                ok = False
            if not ok:
                mismatches.append((tid, e["kind"], f"want {e['status']}/{e['exit']}", f"have {t['status']}/"
                                   f"{t['exit_code']}", [h["status"] for h in t["history"]]))
        leaks = []
        live = {tid for tid, t in tasks.items() if t["status"] == "running"}
        for k in self.nodes:
            names = node_docker(k, "ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.split("\n")
            running_endpoints = 0
            for line in filter(None, names):
                name, st = line.split()
                if not name.startswith("kohakuriver-"):
                    continue
                tid = name.rsplit("-", 1)[1]
                if tid not in live or st != "running":
                    leaks.append((k, "container", name, st))
                elif st == "running":
                    running_endpoints += 1
            veths = subprocess.run(["ip", "-n", node(k), "-o", "link", "show", "type", "veth"], capture_output=True,
                                   text=True).stdout.count("\n")
            if veths - 1 > running_endpoints:  # eth0 (the underlay) is a veth too
                leaks.append((k, "veth", veths - 1, running_endpoints))
            snaps = node_docker(k, "images", "--format", "{{.Repository}}", "kohakuriver-snapshot/*").stdout.split()
            for repo, n in Counter(snaps).items():
                tid = repo.rsplit("-", 1)[1]
                if tid not in tasks or n > 3:
                    leaks.append((k, "snapshot", repo, n))
        held = set(state()["reservations"]) - self.reservations_before
        if held:  # the soak reserves none itself; the runners' VMs would
            leaks.append(("host", "reservations", len(held)))
        return mismatches, leaks

    def overlay_ok(self) -> bool:
        servers = {k: run_sh(k, "sleep 60") for k in self.nodes}
        try:
            ips = []
            for k, tid in servers.items():
                wait_status(tid, "running", timeout=120)
                ips.append(overlay_ip(k, container_name(tid)))
            probe = run_sh(self.nodes[0], " && ".join(f"ping -c 1 -W 5 {ip}" for ip in ips))
            t = wait_status(probe, {"completed", "failed"}, timeout=120)
            return t["status"] == "completed"
        finally:
            for tid in servers.values():
                http("POST", f"{HOST}/cluster/kill/{tid}")

    def run(self) -> int:
        start = time.monotonic()
        end = start + self.args.minutes * 60
        next_fault = start + self.rng.uniform(0.5, 1.5) * self.args.fault_every
        while time.monotonic() < end:
            self.submit()
            self.due_actions()
            self.sample()
            if time.monotonic() >= next_fault:
                self.fault()
                next_fault = time.monotonic() + self.rng.uniform(0.5, 1.5) * self.args.fault_every
            time.sleep(self.rng.uniform(0.5, 2.5))
        elapsed = time.monotonic() - start
        self.note(f"dispatch over after {elapsed:.0f} s; settling {len(self.expect)} tasks")
        self.settle()
        self.sample()
        mismatches, leaks = self.check()
        overlay = self.overlay_ok()
        for m in mismatches:
            self.note(f"MISMATCH {m}")
        for leak in leaks:
            self.note(f"LEAK {leak}")
        drift = [(s[-1][1] - s[0][1], s[-1][2] - s[0][2]) for s in self.samples.values() if len(s) >= 2]
        result = {"tasks": len(self.expect), "faults": dict(self.faults), "mismatches": len(mismatches),
                  "leaks": len(leaks), "rss_drift_mib": round(max((d[0] for d in drift), default=0) / 1024, 2),
                  "fd_drift": max((d[1] for d in drift), default=0), "overlay_ok": overlay,
                  "tasks_per_s": round(len(self.expect) / elapsed, 3), "seed": self.args.seed}
        print(json.dumps(result), flush=True)
        return 0 if not mismatches and not leaks and overlay else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--fault-every", type=float, default=60, help="mean seconds between faults")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(2**31)
    print(f"cluster_soak: seed {args.seed}", flush=True)
    sys.exit(Soak(args).run())


if __name__ == "__main__":
    main()

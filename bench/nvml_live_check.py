#!/usr/bin/env python3
"""Live NVML check on a GPU node (manual; not part of CI).

Starts the runner against the fixture host on loopback, takes the gpu_info
of its registration and of two heartbeats, and compares every field with
`nvidia-smi --query-gpu` read at about the same moment. Prints one line per
GPU and field, and exits non-zero when a static field differs or a dynamic
one is out of tolerance.

  bench/nvml_live_check.py [path/to/kohakuriver] [--out DIR]
"""
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from fixture_host import FixtureHost  # noqa: E402

binary = next((a for a in sys.argv[1:] if not a.startswith("--")), str(REPO / "build" / "kohakuriver"))
out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else None

FIELDS = "index,name,pci.bus_id,memory.total,memory.used,utilization.gpu,utilization.memory,temperature.gpu,power.draw,power.limit,fan.speed,driver_version"


def smi():
    raw = subprocess.run(["nvidia-smi", f"--query-gpu={FIELDS}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    return [dict(zip(FIELDS.split(","), [c.strip() for c in row])) for row in csv.reader(io.StringIO(raw))]


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


host = FixtureHost().start()
tmp = Path(tempfile.mkdtemp(prefix="kr-nvml."))
for d in ("share", "local", "state"):
    (tmp / d).mkdir()
cfg = tmp / "runner_config.py"
cfg.write_text("\n".join([
    'RUNNER_BIND_IP = "127.0.0.1"', "RUNNER_PORT = 18901", 'HOST_ADDRESS = "127.0.0.1"',
    f"HOST_PORT = {host.port}", f'SHARED_DIR = "{tmp}/share"', f'LOCAL_TEMP_DIR = "{tmp}/local"',
    f'STATE_DIR = "{tmp}/state"', "HEARTBEAT_INTERVAL_SECONDS = 1", ""]))
log = open(tmp / "runner.log", "wb")
proc = subprocess.Popen([binary, "runner", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
failures = 0
try:
    reg = host.wait_for("register", 1, timeout=20)[0].json()
    hb = host.wait_for("heartbeat", 2, timeout=20)[-1].json()
    ref = smi()
    ours = hb.get("gpu_info") or []
    report = {"registration_gpu_info": reg.get("gpu_info"), "heartbeat": hb, "nvidia_smi": ref}
    print(f"runner reports {len(ours)} GPU(s); nvidia-smi shows {len(ref)}")
    if len(ours) != len(ref):
        failures += 1
    for g, s in zip(ours, ref):
        checks = [
            ("name", g.get("name"), s["name"], lambda a, b: a == b),
            ("pci_bus_id", g.get("pci_bus_id"), s["pci.bus_id"], lambda a, b: str(a).lower() == str(b).lower()),
            ("driver_version", g.get("driver_version"), s["driver_version"], lambda a, b: a == b),
            ("memory_total_mib", g.get("memory_total_mib"), num(s["memory.total"]), lambda a, b: abs(a - b) <= 1),
            ("memory_used_mib", g.get("memory_used_mib"), num(s["memory.used"]), lambda a, b: abs(a - b) <= 1024),
            ("gpu_utilization", g.get("gpu_utilization"), num(s["utilization.gpu"]), lambda a, b: abs(a - b) <= 20),
            ("temperature", g.get("temperature"), num(s["temperature.gpu"]), lambda a, b: abs(a - b) <= 3),
            ("power_usage_mw/W", g.get("power_usage_mw"), num(s["power.draw"]),
             lambda a, b: b is None or abs(a / 1000 - b) <= max(15, 0.2 * b)),
            ("power_limit_mw/W", g.get("power_limit_mw"), num(s["power.limit"]),
             lambda a, b: b is None or abs(a / 1000 - b) <= 1),
        ]
        for name, a, b, ok in checks:
            try:
                good = a is not None and ok(a, b)
            except Exception:
                good = False
            failures += 0 if good else 1
            print(f"gpu {s['index']} {name:18} runner={a!r:40} nvidia-smi={b!r:30} {'ok' if good else 'MISMATCH'}")
        print(f"gpu {s['index']} all runner keys: {sorted(g)}")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "nvml_live_check.json").write_text(json.dumps(report, indent=1))
finally:
    proc.terminate()
    proc.wait(10)
    log.close()
    host.stop()
    if out:
        (out / "runner.log").write_bytes((tmp / "runner.log").read_bytes()[-200000:])
print("RESULT:", "ok" if failures == 0 else f"{failures} mismatch(es)")
sys.exit(1 if failures else 0)

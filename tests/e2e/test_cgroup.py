"""Command tasks bound to a NUMA node (decisions.md NUMA Fix: CpusetCpus +
CpusetMems instead of numactl in the container), checked from inside the
container on cgroup v1 and v2 alike: the kernel's own view
(/proc/self/status) and the container's cgroup files, whichever hierarchy the
node runs. scripts/cgroup-v2-guest.sh runs this on a unified-hierarchy guest
with two NUMA nodes; on a one-node machine it still proves the binding path."""
import pytest

from taskutil import final_report, new_task_id, submit
from test_tasks import clean_containers, logs_of, task_runner  # noqa: F401  (fixtures; clean_containers is autouse)


def cpu_list(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


# Inside the container: the kernel's binding, then the cgroup's (v2 files
# first, v1 as the fallback), one key=value per line.
PROBE = ("sh -c 'grep -E \"^(Cpus|Mems)_allowed_list\" /proc/self/status | tr -d \"\\t\" | tr : =;"
         " if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo hier=v2;"
         "  echo cg_cpus=$(cat /sys/fs/cgroup/cpuset.cpus.effective); echo cg_mems=$(cat /sys/fs/cgroup/cpuset.mems.effective);"
         " else echo hier=v1;"
         "  echo cg_cpus=$(cat /sys/fs/cgroup/cpuset/cpuset.cpus); echo cg_mems=$(cat /sys/fs/cgroup/cpuset/cpuset.mems); fi'")


def test_numa_target_binds_cpus_and_memory_of_that_node(host, task_runner):  # noqa: F811
    topo = host.wait_for("register")[0].json()["numa_topology"]
    if not topo:
        pytest.skip("SKIPPED LOUDLY: this node reports no NUMA topology (no /sys/devices/system/node)")
    node_id = max(int(k) for k in topo)
    cores = set(topo[str(node_id)]["cores"])
    tid = new_task_id()
    submit(task_runner, tid, PROBE, target_numa_node_id=node_id)
    final = final_report(host, tid, timeout=120)
    assert final["status"] == "completed", final
    out = logs_of(task_runner, tid)[0]
    vals = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    print(f"node {node_id} of {sorted(topo)}; cgroup {vals.get('hier')}; {vals}")
    assert cpu_list(vals["Cpus_allowed_list"]) == cores, vals
    assert cpu_list(vals["Mems_allowed_list"]) == {node_id}, vals
    assert cpu_list(vals["cg_cpus"]) == cores, vals
    assert cpu_list(vals["cg_mems"]) == {node_id}, vals


def test_unknown_numa_node_runs_unbound(host, task_runner):  # noqa: F811
    topo = host.wait_for("register")[0].json()["numa_topology"]
    if not topo:
        pytest.skip("SKIPPED LOUDLY: this node reports no NUMA topology (no /sys/devices/system/node)")
    missing = max([int(k) for k in topo] + [0]) + 7
    tid = new_task_id()
    submit(task_runner, tid, PROBE, target_numa_node_id=missing)
    final = final_report(host, tid, timeout=120)
    assert final["status"] == "completed", final
    vals = dict(line.split("=", 1) for line in logs_of(task_runner, tid)[0].splitlines() if "=" in line)
    all_cores = set().union(*(set(n["cores"]) for n in topo.values()))
    assert cpu_list(vals["Cpus_allowed_list"]) >= all_cores, vals

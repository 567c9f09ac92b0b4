#!/usr/bin/env python3
"""KohakuRiver VM agent (written for the C++ runner; contract: vm.md section 8).

Installed by cloud-init as /usr/local/bin/kohakuriver-vm-agent and run by
systemd. Tells the runner once per start that the guest is up (phone-home),
then sends a heartbeat with memory, disk, load and GPU figures every
KOHAKU_HEARTBEAT_INTERVAL seconds. Standard library only; NVIDIA figures
come from pynvml when it is installed.
"""
import json
import os
import sys
import time
import urllib.request


def log(text):
    print("kohakuriver-vm-agent: " + text, flush=True)


def post(url, body, timeout):
    # body None: Content-Length 0 and no Content-Type (what the runner expects
    # for phone-home); otherwise a JSON document.
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


def system_figures():
    figures = {"memory_total_bytes": 0, "memory_used_bytes": 0,
               "disk_total_bytes": 0, "disk_used_bytes": 0, "load_1m": 0.0}
    try:
        meminfo = {}
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, rest = line.partition(":")
                meminfo[name] = int(rest.split()[0]) * 1024
        figures["memory_total_bytes"] = meminfo["MemTotal"]
        figures["memory_used_bytes"] = meminfo["MemTotal"] - meminfo["MemAvailable"]
    except (OSError, KeyError, ValueError, IndexError):
        figures["memory_total_bytes"] = figures["memory_used_bytes"] = 0
    try:
        st = os.statvfs("/")
        figures["disk_total_bytes"] = st.f_blocks * st.f_frsize
        figures["disk_used_bytes"] = (st.f_blocks - st.f_bfree) * st.f_frsize
    except OSError:
        figures["disk_total_bytes"] = figures["disk_used_bytes"] = 0
    try:
        with open("/proc/loadavg") as f:
            figures["load_1m"] = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        figures["load_1m"] = 0.0
    return figures


def gpu_figures():
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []

    def read(fn, *args):
        try:
            return fn(*args)
        except Exception:
            return -1

    def text(value):
        return value.decode() if isinstance(value, bytes) else value

    gpus = []
    try:
        driver = text(pynvml.nvmlSystemGetDriverVersion())
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            util = read(pynvml.nvmlDeviceGetUtilizationRates, handle)
            memory = read(pynvml.nvmlDeviceGetMemoryInfo, handle)
            mib = 1024.0 * 1024.0
            gpus.append({
                "gpu_id": index,
                "name": text(pynvml.nvmlDeviceGetName(handle)),
                "driver_version": driver,
                "pci_bus_id": text(pynvml.nvmlDeviceGetPciInfo(handle).busId),
                "gpu_utilization": -1 if util == -1 else util.gpu,
                "graphics_clock_mhz": read(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_GRAPHICS),
                "mem_utilization": -1 if util == -1 else util.memory,
                "mem_clock_mhz": read(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_MEM),
                "memory_total_mib": -1 if memory == -1 else memory.total / mib,
                "memory_used_mib": -1 if memory == -1 else memory.used / mib,
                "memory_free_mib": -1 if memory == -1 else memory.free / mib,
                "temperature": read(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU),
                "fan_speed": read(pynvml.nvmlDeviceGetFanSpeed, handle),
                "power_usage_mw": read(pynvml.nvmlDeviceGetPowerUsage, handle),
                "power_limit_mw": read(pynvml.nvmlDeviceGetEnforcedPowerLimit, handle),
            })
    except Exception:
        gpus = []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return gpus


def main():
    base = os.environ.get("KOHAKU_RUNNER_URL", "").rstrip("/")
    task = os.environ.get("KOHAKU_TASK_ID", "").strip()
    if not task:
        log("KOHAKU_TASK_ID is not set; nothing to report")
        return 1
    try:
        task_id = int(task)
    except ValueError:
        log("KOHAKU_TASK_ID is not an integer: " + task)
        return 1
    if not base:
        log("KOHAKU_RUNNER_URL is not set; nothing to report to")
        return 1
    try:
        interval = float(os.environ.get("KOHAKU_HEARTBEAT_INTERVAL", "10"))
    except ValueError:
        interval = 10.0
    interval = max(interval, 0.1)

    prefix = "%s/api/vps/%d" % (base, task_id)
    # Once per start (each guest boot and service restart); not retried: the
    # first heartbeat marks the VM ready as well.
    try:
        post(prefix + "/vm-phone-home", None, 10)
        log("phoned home to " + base)
    except Exception as e:  # noqa: BLE001 - report and carry on
        log("phone-home failed: %s" % e)

    while True:
        body = {"task_id": task_id, "timestamp": time.time(), "gpus": gpu_figures(),
                "system": system_figures(), "status": "healthy"}
        try:
            post(prefix + "/vm-heartbeat", body, 5)
        except Exception as e:  # noqa: BLE001
            log("heartbeat failed: %s" % e)
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fixture_host import FixtureHost  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("KR_BINARY", REPO / "build" / "kohakuriver"))


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on, outside the kernel's ephemeral range.

    Port 0 would be simpler but races: between our probe and the runner's
    bind, the kernel may hand the same ephemeral port to an outgoing
    connection or Docker to a published VPS port (HostPort "0"), and the
    runner then fails with EADDRINUSE. Ports below the ephemeral range are
    only ever taken by explicit binds, so probing one is enough; ports already
    handed out in this session are never reused."""
    try:
        lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        lo = 32768
    lo = max(lo, 12000)
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(500):
        port = rng.randrange(10000, lo)
        if port in _handed_out:
            continue
        try:
            with socket.socket() as s:
                s.bind(("0.0.0.0", port))
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free TCP port below the ephemeral range")


def py_literal(v):
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(py_literal(x) for x in v) + "]"
    raise TypeError(v)


class RunnerProcess:
    def __init__(self, tmp: Path, host: FixtureHost | None, overrides: dict, args: list[str], env: dict | None):
        self.tmp = tmp
        self.port = overrides.pop("RUNNER_PORT", None) or free_port()
        cfg = {
            "RUNNER_BIND_IP": "0.0.0.0",
            "RUNNER_PORT": self.port,
            "HOST_ADDRESS": "127.0.0.1",
            "HOST_PORT": host.port if host else free_port(),
            "SHARED_DIR": str(tmp / "share"),
            "LOCAL_TEMP_DIR": str(tmp / "local"),
            "STATE_DIR": str(tmp / "state"),
            "HEARTBEAT_INTERVAL_SECONDS": 1,
            "LOG_LEVEL": "debug",
        }
        cfg.update(overrides)
        # A node's shared and local dirs exist before the runner starts.
        for key in ("SHARED_DIR", "LOCAL_TEMP_DIR"):
            Path(cfg[key]).mkdir(parents=True, exist_ok=True)
        self.config = cfg
        self.config_path = tmp / "runner_config.py"
        lines = ['"""test runner config"""', "from kohakuengine import Config", ""]
        lines += [f"{k} = {py_literal(v)}" for k, v in cfg.items()]
        lines += ["", "def config_gen():", "    return Config.from_globals()", ""]
        self.config_path.write_text("\n".join(lines))
        self.log_path = tmp / "runner.log"
        self.args = args
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.started_at = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([str(BINARY), "runner", "--config", str(self.config_path), *self.args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def wait_listening(self, timeout=10.0, port=None):
        port = port or self.port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"runner exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"runner did not listen on {port}:\n{self.output()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        return self.proc.returncode if self.proc else None


@pytest.fixture
def host():
    h = FixtureHost().start()
    yield h
    h.stop()


@pytest.fixture
def make_runner(tmp_path):
    created = []

    def make(host=None, args=None, env=None, start=True, **overrides):
        r = RunnerProcess(tmp_path, host, overrides, args or [], env)
        created.append(r)
        if start:
            r.start()
        return r

    yield make
    for r in created:
        r.stop(sig=signal.SIGKILL if r.proc and r.proc.poll() is None else signal.SIGTERM)


@pytest.fixture
def binary():
    if not BINARY.exists():
        pytest.fail(f"runner binary {BINARY} not built (run scripts/build.sh)")
    return BINARY


# One hung test must not hang the whole suite (CI gives it 90 minutes): after
# KR_TEST_TIMEOUT seconds (default 600) the test fails with the stacks of all
# threads printed, instead of waiting forever on a socket.
TEST_TIMEOUT = int(os.environ.get("KR_TEST_TIMEOUT", "600"))


class SuiteTimeout(Exception):
    pass


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout_s(seconds): a longer per-test limit than KR_TEST_TIMEOUT "
                                       "(a VM booting under TCG)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    import faulthandler

    marker = item.get_closest_marker("timeout_s")
    limit = max(TEST_TIMEOUT, int(marker.args[0])) if marker else TEST_TIMEOUT

    def expired(signum, frame):
        raise SuiteTimeout(f"{item.nodeid} ran longer than {limit} s (KR_TEST_TIMEOUT / timeout_s)")

    previous = signal.signal(signal.SIGALRM, expired)
    faulthandler.dump_traceback_later(limit - 1, exit=False)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)

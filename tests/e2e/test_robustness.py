"""Hostile and malformed input must get a clear 4xx and never crash the
runner or start anything (protocol.md §0.3–0.4)."""
import json
import random

from taskutil import http, new_task_id, remove_task_containers

ROUTES = [("POST", "/api/execute"), ("POST", "/api/kill"), ("POST", "/api/pause"), ("POST", "/api/resume"),
          ("POST", "/api/docker/sync/x"), ("GET", "/api/docker/images")]

ODD_VALUES = [None, True, 0, -1, 2**63, 2**64, -2**63 - 1, 1.5, 1e308, "", " ", "\x00", "💥" * 100,
              "a" * 100_000, [], [[]], {}, {"a": {"b": []}}, "9223372036854775808", "-0", "0x10", "1e3"]
FIELDS = ["task_id", "command", "arguments", "env_vars", "required_cores", "required_gpus",
          "required_memory_bytes", "target_numa_node_id", "container_name", "registry_image", "working_dir",
          "stdout_path", "stderr_path", "reserved_ip"]


def test_malformed_bodies_never_crash(host, make_runner):
    runner = make_runner(host)
    runner.wait_listening()
    rnd = random.Random(1234)
    raw_bodies = [b"", b"null", b"[]", b"\"str\"", b"{", b"{\"task_id\":", b"\xff\xfe", b"{}" * 1000,
                  b"{\"task_id\": 1" + b"," * 10_000 + b"}", json.dumps({"a": [[[[[]]]]] * 1000}).encode()]
    try:
        for method, path in ROUTES:
            for body in raw_bodies:
                st, _ = http(method, runner.url(path), body if method == "POST" else None)
                assert st in (200, 404, 405, 413, 422, 500), (path, body[:40], st)
        for _ in range(300):
            body = {f: rnd.choice(ODD_VALUES) for f in rnd.sample(FIELDS, rnd.randint(0, len(FIELDS)))}
            st, reply = http("POST", runner.url(rnd.choice(["/api/execute", "/api/kill", "/api/pause"])),
                             json.dumps(body).encode())
            # 413: kill/pause bodies are capped at 64 KiB (a 100,000-character value).
            assert st in (200, 404, 409, 413, 422), (body, st, reply)
            if st == 422:
                assert isinstance(reply["detail"], list) and all("loc" in d for d in reply["detail"])
        assert runner.proc.poll() is None
        st, reply = http("GET", runner.url("/healthz"))
        assert st == 200
    finally:
        # Odd-but-valid bodies may have been accepted; their containers go.
        remove_task_containers()


def test_path_parameters_validated(host, make_runner):
    runner = make_runner(host)
    runner.wait_listening()
    st, reply = http("POST", runner.url("/api/docker/sync/..%2F..%2Fetc"))
    assert st in (404, 422)
    st, reply = http("POST", runner.url("/api/docker/sync/UPPER:case"))
    assert st == 422 and reply["detail"][0]["loc"] == ["path", "container_name"]
    assert runner.proc.poll() is None

"""WebSocket client helpers for the terminal and filesystem-watch tests
(websocket-client, Debian's python3-websocket)."""
import json
import sys
import time

try:
    import websocket  # noqa: F401
except ImportError:  # pytest may run on an interpreter outside Debian's site dir
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import websocket  # noqa: F401
    except ImportError as e:  # loud: these tests must not be skipped silently
        raise ImportError("python3-websocket is required (scripts/install-deps.sh --test)") from e

import websocket  # noqa: E402


def connect(runner, path, timeout=30):
    return websocket.create_connection(f"ws://127.0.0.1:{runner.port}{path}", timeout=timeout)


def recv_json(ws, timeout=30):
    """The next text message within `timeout` seconds in all. Control frames
    are returned to this loop (websocket-client answers pings itself) so that
    a server's keep-alive pings cannot extend the wait forever."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no message within {timeout} s")
        ws.settimeout(left)
        op, data = ws.recv_data(control_frame=True)
        if op in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
            continue
        assert op == websocket.ABNF.OPCODE_TEXT, f"expected a text frame, got opcode {op}"
        return json.loads(data.decode())


def read_until(ws, needle, timeout=30):
    """Concatenates terminal output frames until `needle` appears."""
    out = ""
    deadline = time.monotonic() + timeout
    while needle not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {needle!r}; got {out[-2000:]!r}"
        msg = recv_json(ws, timeout=left)
        assert msg["type"] == "output", msg
        out += msg["data"]
    return out


def send_json(ws, obj):
    ws.send(json.dumps(obj))

"""Drives libhedgebridge_ws through ctypes: one JSON request per line on stdin, one JSON answer per line on stdout.

Runs in its own process so that the sanitizer runtime can be preloaded (``LD_PRELOAD=libasan.so``) without
touching the test process. Usage: ``python driver.py /path/to/libhedgebridge_ws.so``.

Every buffer handed to the library is followed by a guard area filled with a known pattern; answers report
whether the guard is intact, so a write past ``bufferSize`` is seen even where ASan could not see it.
"""

from __future__ import annotations

import ctypes
import json
import statistics
import sys
import threading
import time
from typing import Any

GUARD = 16
GUARD_BYTE = 0xAB
GUARD_UNIT = 0xABCD


def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    text = ctypes.c_char_p
    wide = ctypes.c_void_p
    signatures: dict[str, tuple[list[Any], Any]] = {
        "ConnectWebSocket": ([text, text], ctypes.c_int),
        "ConnectWebSocketW": ([wide, wide], ctypes.c_int),
        "WsSend": ([text], ctypes.c_int),
        "WsSendW": ([wide], ctypes.c_int),
        "ReceiveMessage": ([ctypes.c_void_p, ctypes.c_int], ctypes.c_int),
        "ReceiveMessageW": ([ctypes.c_void_p, ctypes.c_int], ctypes.c_int),
        "IsConnected": ([], ctypes.c_int),
        "DisconnectWebSocket": ([], None),
        "WsGetLastError": ([], ctypes.c_int),
        "WsGetLastErrorMessage": ([ctypes.c_void_p, ctypes.c_int], ctypes.c_int),
        "WsGetLastErrorMessageW": ([ctypes.c_void_p, ctypes.c_int], ctypes.c_int),
        "WsGetCloseCode": ([], ctypes.c_int),
        "WsSetOption": ([text, text], ctypes.c_int),
        "WsSetOptionW": ([wide, wide], ctypes.c_int),
        "WsGetState": ([], ctypes.c_int),
        "WsPendingMessages": ([], ctypes.c_int),
        "WsGetReconnectCount": ([], ctypes.c_int),
        "WsGetReconnectDelayMs": ([], ctypes.c_int),
        "WsGetHttpStatus": ([], ctypes.c_int),
        "WsGetRetryAfterMs": ([], ctypes.c_int),
    }
    for name, (args, result) in signatures.items():
        try:
            function = getattr(lib, name)
        except AttributeError:
            continue  # an older library: the ops that need it answer with an error naming it
        function.argtypes = args
        function.restype = result
    return lib


def _reload(lib: ctypes.CDLL, path: str) -> ctypes.CDLL:
    """dlclose the library and dlopen it again (the Linux build is linked with -z nodelete: it stays mapped)."""
    import _ctypes

    _ctypes.dlclose(lib._handle)
    return _load(path)


def _watch_reconnects(lib: ctypes.CDLL, count: int, timeout_s: float) -> dict[str, Any]:
    """Poll every millisecond until ``count`` reconnects were scheduled: each one seen, as (number, delay, HTTP
    status, Retry-After in ms), the last two None when the library does not export them."""
    refusals = hasattr(lib, "WsGetHttpStatus") and hasattr(lib, "WsGetRetryAfterMs")
    seen: dict[int, tuple[int, int | None, int | None]] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = lib.WsGetReconnectCount()
        delay = lib.WsGetReconnectDelayMs()
        status = lib.WsGetHttpStatus() if refusals else None
        retry_after = lib.WsGetRetryAfterMs() if refusals else None
        if lib.WsGetReconnectCount() == before and before > 0:
            seen.setdefault(before, (delay, status, retry_after))
        if before >= count:
            break
        time.sleep(0.001)
    return {"result": [[n, *values] for n, values in sorted(seen.items())]}


def _wide(text: str | None) -> ctypes.Array[ctypes.c_char] | None:
    """A NUL-terminated UTF-16 copy of ``text`` (lone surrogates kept as they are)."""
    if text is None:
        return None
    return ctypes.create_string_buffer(text.encode("utf-16-le", "surrogatepass") + b"\x00\x00")


def _narrow(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8", "surrogatepass")


def _read_text(lib: ctypes.CDLL, name: str, size: int, wide: bool, null: bool = False) -> dict[str, Any]:
    """Call a buffer-filling function with a buffer of ``size`` characters followed by a guard (or NULL)."""
    function = getattr(lib, name)
    if wide:
        units = (ctypes.c_uint16 * (max(size, 0) + GUARD))(*([GUARD_UNIT] * (max(size, 0) + GUARD)))
        result = function(None if null else units, size)
        guard_ok = all(u == GUARD_UNIT for u in units[max(size, 0) :])
        untouched = result < 0 and all(u == GUARD_UNIT for u in units)
        text = None
        if result > 0 or (result == 0 and units[0] == 0):
            raw = bytes(memoryview(units).cast("B")[: 2 * result])
            text = raw.decode("utf-16-le", "surrogatepass")
            guard_ok = guard_ok and units[result] == 0
    else:
        data = ctypes.create_string_buffer(bytes([GUARD_BYTE]) * (max(size, 0) + GUARD), max(size, 0) + GUARD)
        result = function(None if null else data, size)
        guard_ok = all(b == GUARD_BYTE for b in data.raw[max(size, 0) :])
        untouched = result < 0 and all(b == GUARD_BYTE for b in data.raw)
        text = None
        if result > 0 or (result == 0 and data.raw[0] == 0):
            text = data.raw[:result].decode("utf-8", "surrogatepass")
            guard_ok = guard_ok and data.raw[result] == 0
    return {"result": result, "text": text, "guard_ok": guard_ok, "untouched": untouched}


def _heartbeat_bench(lib: ctypes.CDLL, samples: int) -> dict[str, Any]:
    """HEARTBEAT round trips through the library (send, then poll ReceiveMessage for the reply)."""
    buffer = ctypes.create_string_buffer(65536)
    timings: list[float] = []
    for seq in range(1, samples + 1):
        frame = json.dumps({"type": "HEARTBEAT", "timestamp": "2026-01-01T00:00:00Z", "seq": seq})
        start = time.perf_counter()
        if lib.WsSend(frame.encode()) != 1:
            return {"error": f"WsSend failed with {lib.WsGetLastError()}"}
        deadline = start + 5.0
        while True:
            n = lib.ReceiveMessage(buffer, len(buffer))
            if n > 0:
                reply = json.loads(buffer.raw[:n])
                if reply.get("type") == "HEARTBEAT" and reply.get("seq") == seq:
                    break
            elif time.perf_counter() > deadline:
                return {"error": f"no reply to heartbeat {seq}"}
        timings.append((time.perf_counter() - start) * 1000.0)
    timings.sort()
    return {
        "samples": len(timings),
        "p50_ms": statistics.median(timings),
        "p99_ms": timings[min(len(timings) - 1, int(len(timings) * 0.99))],
    }


def _stress(lib: ctypes.CDLL, url: str, token: str, rounds: int) -> dict[str, Any]:
    """Connect and disconnect ``rounds`` times while other threads send, receive and query at full speed."""
    stop = threading.Event()
    calls = [0]

    def hammer(wide: bool) -> None:
        narrow_buffer = ctypes.create_string_buffer(4096)
        wide_buffer = (ctypes.c_uint16 * 4096)()
        frame = b'{"type":"HEARTBEAT","timestamp":"2026-01-01T00:00:00Z","seq":1}'
        wide_frame = _wide(frame.decode())
        while not stop.is_set():
            if wide:
                lib.WsSendW(wide_frame)
                lib.ReceiveMessageW(wide_buffer, 4096)
                lib.WsGetLastErrorMessageW(wide_buffer, 3)
            else:
                lib.WsSend(frame)
                lib.ReceiveMessage(narrow_buffer, 4096)
                lib.ReceiveMessage(None, 0)
                lib.WsGetLastErrorMessage(narrow_buffer, 4096)
            lib.IsConnected()
            lib.WsGetState()
            lib.WsGetLastError()
            lib.WsGetCloseCode()
            lib.WsSetOption(b"max_queue", b"64")
            calls[0] += 1

    threads = [threading.Thread(target=hammer, args=(i % 2 == 1,)) for i in range(4)]
    for thread in threads:
        thread.start()
    connected_rounds = 0
    try:
        for _ in range(rounds):
            lib.ConnectWebSocket(url.encode(), token.encode())
            deadline = time.monotonic() + 5.0
            while lib.IsConnected() != 1 and time.monotonic() < deadline:
                time.sleep(0.001)
            connected_rounds += lib.IsConnected()
            lib.DisconnectWebSocket()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return {"result": connected_rounds, "calls": calls[0]}


def handle(lib: ctypes.CDLL, request: dict[str, Any]) -> dict[str, Any]:
    op = request["op"]
    wide = bool(request.get("wide", False))
    if op == "connect":
        if wide:
            return {"result": lib.ConnectWebSocketW(_wide(request["url"]), _wide(request["token"]))}
        return {"result": lib.ConnectWebSocket(_narrow(request["url"]), _narrow(request["token"]))}
    if op == "send":
        if wide:
            return {"result": lib.WsSendW(_wide(request["text"]))}
        return {"result": lib.WsSend(_narrow(request["text"]))}
    if op == "receive":
        name = "ReceiveMessageW" if wide else "ReceiveMessage"
        return _read_text(lib, name, int(request["size"]), wide, bool(request.get("null", False)))
    if op == "error_message":
        name = "WsGetLastErrorMessageW" if wide else "WsGetLastErrorMessage"
        return _read_text(lib, name, int(request["size"]), wide, bool(request.get("null", False)))
    if op == "set_option":
        if wide:
            return {"result": lib.WsSetOptionW(_wide(request["name"]), _wide(request["value"]))}
        return {"result": lib.WsSetOption(_narrow(request["name"]), _narrow(request["value"]))}
    if op == "disconnect":
        lib.DisconnectWebSocket()
        return {"result": None}
    if op == "stress":
        return _stress(lib, request["url"], request["token"], int(request["rounds"]))
    if op == "bench":
        return _heartbeat_bench(lib, int(request["samples"]))
    simple = {
        "is_connected": "IsConnected",
        "last_error": "WsGetLastError",
        "close_code": "WsGetCloseCode",
        "state": "WsGetState",
        "pending": "WsPendingMessages",
        "reconnect_count": "WsGetReconnectCount",
        "reconnect_delay": "WsGetReconnectDelayMs",
        "http_status": "WsGetHttpStatus",
        "retry_after": "WsGetRetryAfterMs",
    }
    needed = {"watch_reconnects": "WsGetReconnectCount", **simple}
    if op in needed and not hasattr(lib, needed[op]):
        return {"error": f"the library does not export {needed[op]}"}
    if op == "watch_reconnects":
        return _watch_reconnects(lib, int(request["count"]), float(request["timeout_s"]))
    if op in simple:
        return {"result": getattr(lib, simple[op])()}
    return {"error": f"unknown op {op}"}


def main() -> None:
    lib = _load(sys.argv[1])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request["op"] == "reload":
            lib = _reload(lib, sys.argv[1])
            print(json.dumps({"result": None}), flush=True)
            continue
        print(json.dumps(handle(lib, request)), flush=True)


if __name__ == "__main__":
    main()

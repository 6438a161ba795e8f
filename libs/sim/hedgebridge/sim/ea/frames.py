"""RFC 6455 frames as the proxy reads them (pure code): bytes in, complete frames out (``FrameParser``,
``FrameError`` on a malformed stream), fragments joined and permessage-deflate messages inflated
(``MessageAssembler``), a frame written (``encode_frame``), what a handshake response negotiated
(``response_terms``) and the (type, actionId) of an EA wire message (``message_fields``)."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA_OPS = {OP_CONTINUATION, OP_TEXT, OP_BINARY}
_CONTROL_OPS = {OP_CLOSE, OP_PING, OP_PONG}
MAX_PAYLOAD = 16 * 1024 * 1024
COMMANDS = frozenset({"OPEN", "CLOSE", "MODIFY"})
REPORTS = frozenset({"OPENED", "CLOSED", "MODIFIED"})


class FrameError(ValueError):
    """The byte stream is not a valid sequence of RFC 6455 frames."""


@dataclass(frozen=True, slots=True)
class WsFrame:
    fin: bool
    rsv1: bool
    opcode: int
    masked: bool
    payload: bytes  # unmasked
    raw: bytes  # the frame exactly as it was on the wire


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """One frame (for tests and for writing frames of our own): masked when ``mask`` (4 bytes) is given."""
    if mask is not None and len(mask) != 4:
        raise ValueError("a mask is 4 bytes")
    head = bytearray([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return bytes(head) + payload
    return bytes(head) + mask + _unmask(payload, mask)


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    key = int.from_bytes((mask * (len(data) // 4 + 1))[: len(data)], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(len(data), "big")


class FrameParser:
    """Splits a byte stream into frames. ``feed`` returns the frames completed by ``data``; a partial frame is
    kept for the next call. ``masked`` is what the direction requires (client frames are masked, server frames
    are not); ``rsv1_allowed`` when permessage-deflate was negotiated. On a malformed frame ``feed`` returns the
    frames before it and sets ``error``; ``rest()`` then hands back the bytes not parsed, and later calls raise
    ``FrameError``."""

    def __init__(self, *, masked: bool, rsv1_allowed: bool = False, max_payload: int = MAX_PAYLOAD) -> None:
        self.masked = masked
        self.rsv1_allowed = rsv1_allowed
        self.max_payload = max_payload
        self._buffer = bytearray()
        self.error: FrameError | None = None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)

    def rest(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def feed(self, data: bytes) -> list[WsFrame]:
        if self.error is not None:
            raise self.error
        self._buffer += data
        frames: list[WsFrame] = []
        try:
            while (frame := self._next()) is not None:
                frames.append(frame)
        except FrameError as exc:
            self.error = exc
        return frames

    def _next(self) -> WsFrame | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        fin, rsv1, opcode = bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F
        if b0 & 0x30 or (rsv1 and not self.rsv1_allowed):
            raise FrameError(f"reserved bits set in frame header 0x{b0:02x}")
        if opcode not in _DATA_OPS | _CONTROL_OPS:
            raise FrameError(f"reserved opcode 0x{opcode:x}")
        masked = bool(b1 & 0x80)
        if masked != self.masked:
            raise FrameError("a client frame must be masked" if self.masked else "a server frame must not be masked")
        length, offset = b1 & 0x7F, 2
        if opcode in _CONTROL_OPS and (length > 125 or not fin):
            raise FrameError("a control frame must be final and carry at most 125 bytes")
        if length == 126:
            if len(buf) < 4:
                return None
            length, offset = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, offset = int.from_bytes(buf[2:10], "big"), 10
            if length >> 63:
                raise FrameError("the most significant bit of a 64-bit length must be 0")
        if length > self.max_payload:
            raise FrameError(f"frame payload of {length} bytes exceeds {self.max_payload}")
        mask = b""
        if masked:
            if len(buf) < offset + 4:
                return None
            mask, offset = bytes(buf[offset : offset + 4]), offset + 4
        end = offset + length
        if len(buf) < end:
            return None
        raw = bytes(buf[:end])
        payload = raw[offset:]
        del buf[:end]
        return WsFrame(fin, rsv1, opcode, masked, _unmask(payload, mask) if masked else payload, raw)


class MessageAssembler:
    """Joins fragments into messages and inflates compressed ones (one per direction: the inflater keeps the
    sliding window across messages, which is right with and without context takeover)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._opcode = 0
        self._compressed = False
        self._inflater = zlib.decompressobj(-15)

    def add(self, frame: WsFrame) -> tuple[int, bytes] | None:
        """The completed (opcode, payload) of a data message, or None (a fragment, or a control frame)."""
        if frame.opcode in _CONTROL_OPS:
            return None
        if frame.opcode == OP_CONTINUATION:
            if not self._parts and not self._opcode:
                raise FrameError("a continuation frame without a message to continue")
        else:
            if self._opcode:
                raise FrameError("a new message began before the previous one was final")
            self._opcode, self._compressed = frame.opcode, frame.rsv1
        self._parts.append(frame.payload)
        if not frame.fin:
            return None
        data = b"".join(self._parts)
        opcode, compressed = self._opcode, self._compressed
        self._parts, self._opcode, self._compressed = [], 0, False
        if compressed:
            try:
                data = self._inflater.decompress(data + b"\x00\x00\xff\xff")
            except zlib.error as exc:
                raise FrameError(f"cannot inflate a compressed message: {exc}") from None
        return opcode, data


def message_fields(payload: bytes) -> tuple[str, str | None] | None:
    """(type, actionId) of a JSON text message of the EA wire, or None when it is not one."""
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    action = value.get("actionId")
    return value["type"], action if isinstance(action, str) else None


def response_terms(head: bytes) -> tuple[bool, bool]:
    """(switched to WebSocket, permessage-deflate negotiated) from the gateway's handshake response."""
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    upgraded = len(parts) >= 2 and parts[1] == "101"
    deflate = any(
        name.strip().lower() == "sec-websocket-extensions" and "permessage-deflate" in value.lower()
        for name, _, value in (line.partition(":") for line in lines[1:])
    )
    return upgraded, deflate

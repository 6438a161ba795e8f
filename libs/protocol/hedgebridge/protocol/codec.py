"""Encoding and decoding: JSON on the EA wire, msgpack on NATS.

Decoding never raises anything but ``ProtocolError``, which carries an error code from the registry and
the path of the offending field. JSON nested deeper than ``MAX_DEPTH`` levels (arrays and objects) is
refused before it is parsed (MALFORMED_FRAME): no message of the protocol nests more than a few levels, and a
parser recursing through a thousand levels of ``[`` would exhaust the stack.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from . import errors
from .messages import Command, Event, Frame, Message, OrderRequest

T = TypeVar("T")

_json_decoder: msgspec.json.Decoder[Frame] = msgspec.json.Decoder(Frame)
_json_encoder = msgspec.json.Encoder()
_loose_json = msgspec.json.Decoder()
_mp_encoder = msgspec.msgpack.Encoder()
_mp_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}

MAX_DEPTH = 32
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_BRACKETS = bytes.maketrans(b"{}", b"[]")  # only the depth matters: one kind of bracket
_NOT_BRACKET_OR_QUOTE = bytes(b for b in range(256) if b not in b'[]{}"')
TOO_DEEP = f"the frame nests arrays and objects deeper than {MAX_DEPTH} levels"

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_AT_KEY = re.compile(r" - at `key` in `\$(?P<path>[^`]*)`$")  # a bad key of a map: the map is the field
_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]+)`")
_BACKTICK = re.compile(r"`(?P<name>[A-Za-z0-9_]+)`")


class ProtocolError(Exception):
    """A frame or message that does not satisfy the protocol.

    ``code`` is a registry code (MALFORMED_FRAME, UNKNOWN_TYPE, MISSING_FIELD, INVALID_FIELD);
    ``field`` is the dotted path of the bad field (``metadata.userId``, ``positions[0].volume``) when known;
    ``ref_type`` / ``ref_id`` name the offending message when it could be read that far.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        ref_type: str | None = None,
        ref_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.ref_type = ref_type
        self.ref_id = ref_id

    def __repr__(self) -> str:
        return f"ProtocolError({self.code}, {self.message!r}, field={self.field!r})"


def _classify(exc: msgspec.ValidationError) -> tuple[str, str | None, str]:
    text = str(exc)
    path = ""
    at = _AT.search(text) or _AT_KEY.search(text)
    if at:
        path = at.group("path").lstrip(".")
        text_core = text[: at.start()]
    else:
        text_core = text
    missing = _MISSING.match(text_core)
    if missing:
        name = missing.group("name")
        field = f"{path}.{name}" if path else name
        if field == "type":
            return errors.MISSING_FIELD, "type", "missing field `type`"
        return errors.MISSING_FIELD, field, f"missing field `{field}`"
    if path == "type":
        return errors.UNKNOWN_TYPE, "type", "unknown message type"
    if path:
        return errors.INVALID_FIELD, path, f"invalid `{path}`: {text_core}"
    if text_core.startswith("Expected `object`"):
        return errors.MALFORMED_FRAME, None, "a frame must be a JSON object"
    named = _BACKTICK.search(text_core)  # raised by a message's own check (__post_init__)
    if named:
        code = errors.MISSING_FIELD if "required" in text_core else errors.INVALID_FIELD
        return code, named.group("name"), text_core
    return errors.INVALID_FIELD, None, text_core


def _reference(raw: Any) -> tuple[str | None, str | None]:
    if not isinstance(raw, dict):
        return None, None
    rtype = raw.get("type")
    rid = raw.get("actionId") or raw.get("positionId")
    return (
        rtype[:64] if isinstance(rtype, str) else None,
        rid[:128] if isinstance(rid, str) else None,
    )


def nesting_depth_over(data: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text ``data`` nests arrays and objects deeper than ``limit`` (strings do not count).

    Cheap for what terminals and clients send: a frame with at most ``limit`` brackets cannot be deeper, and
    otherwise it is all C code: escapes dropped, the text reduced to its brackets outside strings, then
    each pass removes the innermost pairs (one level: ``bytes.replace`` does not rescan what it joined), so it
    stops after at most ``limit + 1`` passes. Unbalanced text is judged by its run of open brackets (it is
    malformed anyway; what matters is that a deep one never reaches the parser)."""
    if isinstance(data, str):
        if data.count("[") + data.count("{") <= limit:
            return False
        raw = data.encode(errors="surrogatepass")
    elif data.count(b"[") + data.count(b"{") <= limit:
        return False
    else:
        raw = data
    if b"\\" in raw:
        raw = _ESCAPE.sub(b"", raw)
    # brackets and quotes only; two quotes in a row are an empty string or two strings with nothing between
    # them, so dropping them keeps every bracket inside or outside the strings it was in
    skeleton = raw.translate(_BRACKETS, _NOT_BRACKET_OR_QUOTE).replace(b'""', b"")
    if b'"' in skeleton:  # strings holding brackets: keep what is outside them
        skeleton = b"".join(skeleton.split(b'"')[::2])
    for passes in range(limit + 1):
        if not skeleton:
            return False
        stripped = skeleton.replace(b"[]", b"")
        if stripped == skeleton:  # unbalanced: the open brackets left in a row
            return b"[" * (limit - passes + 1) in skeleton
        if passes == limit:  # a level below the limit still holds pairs
            return True
        skeleton = stripped
    return False


def read_loosely(data: bytes | str) -> Any:
    """``data`` parsed as any JSON value, or None when it is not JSON (or nests too deep): for reading what
    a refused frame names (its type, requestId, actionId)."""
    if nesting_depth_over(data):
        return None
    try:
        return _loose_json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def decode_frame(data: bytes | str) -> Frame:
    """Decode one EA-wire JSON frame into its message. Raises ProtocolError only."""
    result: Frame = decode_with(_json_decoder, data)
    return result


def decode_with(decoder: msgspec.json.Decoder[Any], data: bytes | str) -> Any:
    """Decode a JSON frame with ``decoder``, turning every failure into a ProtocolError."""
    if nesting_depth_over(data):
        raise ProtocolError(errors.MALFORMED_FRAME, TOO_DEEP)
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        code, field, message = _classify(exc)
        ref_type, ref_id = _reference(read_loosely(data))
        if code == errors.UNKNOWN_TYPE and ref_type is not None:
            message = f"unknown message type {ref_type!r}"
        raise ProtocolError(code, message, field=field, ref_type=ref_type, ref_id=ref_id) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(errors.MALFORMED_FRAME, f"frame is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ProtocolError(errors.MALFORMED_FRAME, "frame is not valid UTF-8") from None
    except RecursionError:  # the stack ran out below MAX_DEPTH (a deep caller): the same answer
        raise ProtocolError(errors.MALFORMED_FRAME, TOO_DEEP) from None


def encode_frame(message: Message) -> bytes:
    """Encode a message as an EA-wire JSON frame."""
    return _json_encoder.encode(message)


def pack(message: Any) -> bytes:
    """Encode a message (or any msgspec-supported value) as msgpack for NATS."""
    return _mp_encoder.encode(message)


def _unpack_with(decoder: msgspec.msgpack.Decoder[Any], data: bytes) -> Any:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        code, field, message = _classify(exc)
        raise ProtocolError(code, message, field=field) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(errors.MALFORMED_FRAME, f"payload is not valid msgpack: {exc}") from None
    except RecursionError:
        raise ProtocolError(errors.MALFORMED_FRAME, "payload nests too deep") from None


def unpack(data: bytes, kind: type[T]) -> T:
    """Decode msgpack from NATS into the Struct ``kind``. Raises ProtocolError only."""
    decoder = _mp_decoders.get(kind)
    if decoder is None:
        decoder = _mp_decoders[kind] = msgspec.msgpack.Decoder(kind)
    result: T = _unpack_with(decoder, data)
    return result


_command_decoder: msgspec.msgpack.Decoder[Command] = msgspec.msgpack.Decoder(Command)
_event_decoder: msgspec.msgpack.Decoder[Event] = msgspec.msgpack.Decoder(Event)
_order_decoder: msgspec.msgpack.Decoder[OrderRequest] = msgspec.msgpack.Decoder(OrderRequest)


def unpack_command(data: bytes) -> Command:
    result: Command = _unpack_with(_command_decoder, data)
    return result


def unpack_event(data: bytes) -> Event:
    result: Event = _unpack_with(_event_decoder, data)
    return result


def unpack_order_request(data: bytes) -> OrderRequest:
    result: OrderRequest = _unpack_with(_order_decoder, data)
    return result

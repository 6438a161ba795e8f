"""Encoding and decoding: JSON on the EA wire, msgpack on NATS.

Decoding never raises anything but ``ProtocolError``, which carries an error code from the registry and
the path of the offending field.
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


def decode_frame(data: bytes | str) -> Frame:
    """Decode one EA-wire JSON frame into its message. Raises ProtocolError only."""
    result: Frame = decode_with(_json_decoder, data)
    return result


def decode_with(decoder: msgspec.json.Decoder[Any], data: bytes | str) -> Any:
    """Decode a JSON frame with ``decoder``, turning every failure into a ProtocolError."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        code, field, message = _classify(exc)
        try:
            raw = _loose_json.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            raw = None
        ref_type, ref_id = _reference(raw)
        if code == errors.UNKNOWN_TYPE and ref_type is not None:
            message = f"unknown message type {ref_type!r}"
        raise ProtocolError(code, message, field=field, ref_type=ref_type, ref_id=ref_id) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(errors.MALFORMED_FRAME, f"frame is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise ProtocolError(errors.MALFORMED_FRAME, "frame is not valid UTF-8") from None


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

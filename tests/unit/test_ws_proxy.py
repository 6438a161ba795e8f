"""The proxy's reading of RFC 6455: frames checked against the websockets library's own encoder, split at every
byte, fragments, permessage-deflate, malformed streams, and the EA-wire fields it records."""

from __future__ import annotations

import json
import zlib

import pytest
from websockets.frames import Frame, Opcode

from hedgebridge.sim.ea.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    FrameError,
    FrameParser,
    MessageAssembler,
    WsFrame,
    encode_frame,
    message_fields,
    response_terms,
)

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70_000]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("masked", [True, False])
def test_frames_of_the_websockets_library_are_read_with_their_payload_and_raw_bytes(size: int, masked: bool) -> None:
    payload = bytes(i % 251 for i in range(size))
    wire = Frame(Opcode.BINARY, payload).serialize(mask=masked)
    (frame,) = FrameParser(masked=masked).feed(wire)
    assert (frame.fin, frame.opcode, frame.masked, frame.payload, frame.raw) == (True, OP_BINARY, masked, payload, wire)


@pytest.mark.parametrize("size", [0, 5, 200, 70_000])
def test_our_encoder_matches_the_library(size: int) -> None:
    payload = b"x" * size
    assert encode_frame(OP_TEXT, payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)
    (frame,) = FrameParser(masked=True).feed(encode_frame(OP_TEXT, payload, mask=b"\x01\x02\x03\x04"))
    assert frame.payload == payload


def test_a_stream_fed_one_byte_at_a_time_gives_the_same_frames() -> None:
    frames = [
        encode_frame(OP_TEXT, b'{"type":"OPEN"}', mask=b"abcd"),
        encode_frame(OP_PING, b"p", mask=b"wxyz"),
        encode_frame(OP_BINARY, b"y" * 300, mask=b"1234"),
    ]
    stream = b"".join(frames)
    parser = FrameParser(masked=True)
    out: list[WsFrame] = []
    for i in range(len(stream)):
        out += parser.feed(stream[i : i + 1])
        assert parser.pending == len(stream[: i + 1]) - sum(len(f.raw) for f in out)
    assert [f.raw for f in out] == frames
    assert [f.opcode for f in out] == [OP_TEXT, OP_PING, OP_BINARY]
    assert out[0].payload == b'{"type":"OPEN"}'
    assert parser.pending == 0


def test_several_frames_in_one_chunk_and_a_partial_tail() -> None:
    a, b = encode_frame(OP_TEXT, b"one"), encode_frame(OP_TEXT, b"two")
    parser = FrameParser(masked=False)
    assert [f.payload for f in parser.feed(a + b + b[:3])] == [b"one", b"two"]
    assert parser.pending == 3
    assert [f.payload for f in parser.feed(b[3:])] == [b"two"]


@pytest.mark.parametrize(
    ("wire", "masked", "message"),
    [
        (encode_frame(OP_TEXT, b"x"), True, "must be masked"),
        (encode_frame(OP_TEXT, b"x", mask=b"abcd"), False, "must not be masked"),
        (bytes([0x83, 0x00]), False, "reserved opcode"),
        (bytes([0x80 | OP_CLOSE, 126, 0, 200]) + b"x" * 200, False, "control frame"),
        (bytes([OP_PING, 0]), False, "control frame"),
        (bytes([0xC1, 0]), False, "reserved bits"),
        (bytes([0xA1, 0]), False, "reserved bits"),
        (bytes([0x82, 127]) + (1 << 63).to_bytes(8, "big"), False, "most significant bit"),
        (bytes([0x82, 127]) + (1 << 40).to_bytes(8, "big"), False, "exceeds"),
    ],
)
def test_malformed_frames_are_a_frame_error(wire: bytes, masked: bool, message: str) -> None:
    parser = FrameParser(masked=masked)
    assert parser.feed(wire) == []
    assert parser.error is not None
    assert message in str(parser.error)
    with pytest.raises(FrameError):
        parser.feed(b"")


def test_the_frames_before_a_malformed_one_are_returned_and_the_rest_is_handed_back() -> None:
    good = encode_frame(OP_TEXT, b"ok")
    bad = bytes([0x83, 0x00, 0x01, 0x02])
    parser = FrameParser(masked=False)
    assert [f.raw for f in parser.feed(good + bad)] == [good]
    assert parser.error is not None
    assert parser.rest() == bad


def test_rsv1_is_accepted_only_when_deflate_was_negotiated() -> None:
    wire = bytes([0xC1, 0x01, 0x00])
    assert FrameParser(masked=False, rsv1_allowed=True).feed(wire)[0].rsv1
    assert FrameParser(masked=False).feed(wire) == []


def test_fragments_are_joined_and_control_frames_between_them_ignored() -> None:
    parser, messages = FrameParser(masked=False), MessageAssembler()
    wire = (
        encode_frame(OP_TEXT, b'{"type":', fin=False)
        + encode_frame(OP_PING, b"")
        + encode_frame(OP_CONTINUATION, b'"OPEN",', fin=False)
        + encode_frame(OP_CONTINUATION, b'"actionId":"a-1"}')
    )
    done = [m for f in parser.feed(wire) if (m := messages.add(f)) is not None]
    assert done == [(OP_TEXT, b'{"type":"OPEN","actionId":"a-1"}')]


def test_a_continuation_without_a_message_and_a_message_inside_a_message_are_errors() -> None:
    with pytest.raises(FrameError, match="continuation"):
        MessageAssembler().add(WsFrame(True, False, OP_CONTINUATION, False, b"x", b""))
    messages = MessageAssembler()
    messages.add(WsFrame(False, False, OP_TEXT, False, b"x", b""))
    with pytest.raises(FrameError, match="previous one"):
        messages.add(WsFrame(True, False, OP_TEXT, False, b"y", b""))


def test_compressed_messages_are_inflated_with_the_window_kept_across_messages() -> None:
    deflater = zlib.compressobj(wbits=-15)
    messages = MessageAssembler()
    texts = [b'{"type":"OPENED","actionId":"x-1"}', b'{"type":"OPENED","actionId":"x-2"}']
    for text in texts:  # the second one refers back into the first (context takeover)
        body = deflater.compress(text) + deflater.flush(zlib.Z_SYNC_FLUSH)
        assert body.endswith(b"\x00\x00\xff\xff")
        frame = WsFrame(True, True, OP_TEXT, False, body[:-4], b"")
        assert messages.add(frame) == (OP_TEXT, text)
    with pytest.raises(FrameError, match="inflate"):
        MessageAssembler().add(WsFrame(True, True, OP_TEXT, False, b"\xff\xff\xff", b""))


def test_message_fields_reads_type_and_action_id_and_nothing_else() -> None:
    assert message_fields(json.dumps({"type": "OPEN", "actionId": "a"}).encode()) == ("OPEN", "a")
    assert message_fields(b'{"type":"CLOSE"}') == ("CLOSE", None)
    assert message_fields(b'{"type":"OPEN","actionId":5}') == ("OPEN", None)
    for junk in (b"", b"not json", b"[1]", b'{"type":1}', b"\xff\xfe"):
        assert message_fields(junk) is None


def test_the_handshake_response_says_whether_it_upgraded_and_with_deflate() -> None:
    ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    deflate = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    assert response_terms(ok) == (True, False)
    assert response_terms(deflate) == (True, True)
    assert response_terms(b"HTTP/1.1 401 Unauthorized\r\n\r\n") == (False, False)
    assert response_terms(b"garbage") == (False, False)

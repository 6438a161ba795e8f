"""The protocol examples in the README are valid frames of the protocol."""

from __future__ import annotations

import re
from pathlib import Path

from hedgebridge.protocol import CloseCommand, ClosedEvent, OpenCommand, OpenedEvent, SymbolSpecs, decode_frame

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_json_frames() -> list[bytes]:
    """Every JSON object in the README's json blocks; each starts on a line of its own with {"type"."""
    blocks = re.findall(r"```json\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no json example"
    frames: list[str] = []
    for block in blocks:
        for line in block.splitlines():
            if line.startswith('{"type"'):
                frames.append(line)
            elif line.strip():
                frames[-1] += line.strip()
    return [frame.encode() for frame in frames]


def test_readme_examples_decode_as_the_messages_they_show() -> None:
    messages = [decode_frame(frame) for frame in readme_json_frames()]
    assert [type(m) for m in messages] == [OpenCommand, OpenedEvent, CloseCommand, ClosedEvent, SymbolSpecs]
    opened = messages[1]
    assert isinstance(opened, OpenedEvent)
    assert (opened.mt_ticket, opened.status) == ("50000000", "SUCCESS")
    specs = messages[4]
    assert isinstance(specs, SymbolSpecs)
    (eurusd,) = specs.symbols
    assert (eurusd.symbol, eurusd.volume_step, eurusd.trade_mode) == ("EURUSD", 0.01, "FULL")

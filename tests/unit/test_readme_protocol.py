"""The protocol examples in the README are valid frames of the protocol."""

from __future__ import annotations

import re
from pathlib import Path

from hedgebridge.protocol import (
    CloseCommand,
    ClosedEvent,
    ModifiedEvent,
    ModifyCommand,
    OpenCommand,
    OpenedEvent,
    SymbolSpecs,
    decode_frame,
)

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
    assert [type(m) for m in messages] == [
        OpenCommand,
        OpenedEvent,
        CloseCommand,
        ClosedEvent,
        ModifyCommand,
        ModifiedEvent,
        SymbolSpecs,
    ]
    opened = messages[1]
    assert isinstance(opened, OpenedEvent)
    assert (opened.mt_ticket, opened.status) == ("50000000", "SUCCESS")
    modify, modified = messages[4], messages[5]
    assert isinstance(modify, ModifyCommand)
    assert (modify.stop_loss, modify.take_profit, modify.metadata.user_id) == (1.08, None, "u-1")  # tp kept
    assert isinstance(modified, ModifiedEvent)
    assert (modified.stop_loss, modified.take_profit, modified.status) == (1.08, 0.0, "SUCCESS")
    specs = messages[6]
    assert isinstance(specs, SymbolSpecs)
    (eurusd,) = specs.symbols
    assert (eurusd.symbol, eurusd.volume_step, eurusd.trade_mode) == ("EURUSD", 0.01, "FULL")

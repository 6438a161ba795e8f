"""Bad input found by fuzzing the wire, with no server: names that are not names, nesting that is too deep,
numbers outside the protocol's range. Each is one typed ProtocolError (an ERROR frame on the wire)."""

from __future__ import annotations

import pytest

from hedgebridge.protocol import ProtocolError, decode_frame, errors, names, subjects

PRICE = '{"type":"PRICE","accountId":%s,"symbol":"EURUSD","bid":1.0,"ask":1.1,"time":"2026-01-01T00:00:00Z"}'


@pytest.mark.parametrize("account", ["A1\n", "*", ">", "A.B", "A B", "", "x" * 65])
def test_a_name_is_refused_the_same_way_on_the_wire_in_a_subject_and_by_the_rules(account: str) -> None:
    assert not names.is_account_id(account)
    with pytest.raises(ProtocolError) as info:
        decode_frame(PRICE % f'"{account}"'.replace("\n", "\\n"))
    assert (info.value.code, info.value.field) == (errors.INVALID_FIELD, "accountId")
    with pytest.raises(ValueError, match="not a valid subject token"):
        subjects.command(account)


def test_names_end_at_the_end_of_the_string() -> None:
    # ``$`` would also match before a final newline
    assert names.is_account_id("A1")
    assert not names.is_account_id("A1\n")
    assert names.is_action_id("a-1")
    assert not names.is_action_id("a-1\n")
    assert names.is_symbol("EURUSD.m")
    assert not names.is_symbol("EURUSD\n")
    assert names.is_token_id("a.b")
    assert not names.is_token_id("a.b\n")
    with pytest.raises(ValueError, match="not a valid subject token"):
        subjects.action("a-1\n")

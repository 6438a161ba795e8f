"""The ``--json`` form of what the commands print: every field present, defaults included (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from hedgebridge.cli import output, state, status
from hedgebridge.protocol import Alert, HealthReport, MonitorSnapshot, TerminalView, to_builtins

NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


def _snapshot() -> MonitorSnapshot:
    alert = Alert(
        key="margin:A1", rule="margin", account_id="A1", state="OPEN", severity="WARNING", code="MARGIN_LOW",
        opened_at=NOW, updated_at=NOW, seq=1,
    )  # fmt: skip
    return MonitorSnapshot(
        started_at=NOW,
        terminals=[TerminalView(account_id="A1", connected=True, session_id="s1", gateway_id="gw-1", since=NOW)],
        alerts=[alert],
        health=HealthReport(timestamp=NOW, service="monitor", instance="m1", ready=True),
        order_results={"FILLED": 2},
    )


def test_every_field_is_present_and_the_wire_form_kept() -> None:
    snapshot = _snapshot()
    wire = to_builtins(snapshot)
    shown = output.full(snapshot)
    assert isinstance(wire, dict)

    def contains(big: object, small: object) -> bool:  # the wire form is kept: every key, value and type
        if isinstance(small, dict):
            return isinstance(big, dict) and all(k in big and contains(big[k], v) for k, v in small.items())
        if isinstance(small, list):
            return isinstance(big, list) and len(big) == len(small) and all(map(contains, big, small))
        return type(big) is type(small) and big == small

    assert contains(shown, wire)
    assert "ordersSucceeded" not in wire  # omitted on the wire at its default
    assert (shown["ordersSucceeded"], shown["conflicts"], shown["openConflicts"]) == (0, 0, None)
    terminal = shown["terminals"][0]
    assert (terminal["reason"], terminal["balance"], terminal["openPositions"]) == ("", None, 0)
    assert list(shown["alerts"][0])[:2] == ["type", "key"]  # a tagged message: its tag first
    assert shown["alerts"][0]["resolvedAt"] is None
    assert shown["health"]["type"] == "HEALTH"
    assert shown["health"]["checks"] == []
    assert shown["startedAt"] == wire["startedAt"] == "2026-12-04T18:00:00Z"


def test_status_json_has_the_processes_even_when_there_are_none() -> None:
    assert status.status_json(_snapshot(), {})["processes"] == {}
    processes = status.status_json(_snapshot(), {"nats": state.ServiceState(state="running", pid=7)})["processes"]
    assert processes == {"nats": {"state": "running", "pid": 7, "restarts": 0, "last_restart": "", "last_exit": ""}}

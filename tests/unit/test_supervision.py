"""The supervision rules of ``hedgebridge up`` (``hedgebridge.cli.supervision``), without processes."""

from __future__ import annotations

import signal

import pytest

from hedgebridge.cli.supervision import GiveUp, Policy, Start, Stop, Supervisor, Wait, describe_exit


def _stack(policy: Policy | None = None) -> Supervisor:
    sup = Supervisor(policy)
    assert sup.add("nats", 0.0, pid=10) == []
    assert sup.add("cache", 0.0, pid=11) == []
    for name in ("gateway", "executor"):
        assert sup.add(name, 0.0) == [Start(name)]
    assert sup.started("gateway", 20, 0.1) == []
    assert sup.started("executor", 21, 0.1) == []
    return sup


def test_a_unit_that_exits_is_restarted_after_the_first_delay() -> None:
    sup = _stack()
    assert sup.exited("executor", -9, 10.0) == [Wait("executor", -9, 0.5, 1)]
    unit = sup.units["executor"]
    assert (unit.phase, unit.pid, unit.last_exit) == ("waiting", 0, -9)
    assert sup.next_timer() == 10.5
    assert sup.timer(10.4) == []
    assert sup.timer(10.5) == [Start("executor")]
    assert (unit.phase, unit.restarts, unit.last_restart_at) == ("starting", 1, 10.5)
    assert sup.next_timer() is None
    assert sup.timer(11.0) == []  # started once only
    assert sup.started("executor", 30, 11.0) == []
    assert (unit.phase, unit.pid) == ("running", 30)


def test_the_delay_doubles_up_to_the_longest() -> None:
    sup = _stack(Policy(max_crashes=100, window_s=1.0))
    now = 0.0
    delays = []
    for _ in range(10):
        now += 2.0  # up for 2 s: not stable, and each exit alone in its window
        (wait,) = sup.exited("executor", 1, now)
        assert isinstance(wait, Wait)
        delays.append(wait.delay_s)
        now += wait.delay_s
        assert sup.timer(now) == [Start("executor")]
        sup.started("executor", 40, now)
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert sup.units["executor"].restarts == 10


def test_the_delay_resets_after_the_unit_stayed_up() -> None:
    sup = _stack(Policy(max_crashes=100))
    for now, expected, restart in ((1.0, 0.5, 1), (2.0, 1.0, 2), (3.0, 2.0, 3)):
        assert sup.exited("gateway", 1, now) == [Wait("gateway", 1, expected, restart)]
        sup.timer(now + expected)
        sup.started("gateway", 50, now + expected)
    started = sup.units["gateway"].started_at
    assert started == 5.0
    assert sup.exited("gateway", 1, started + 59.9)[0] == Wait("gateway", 1, 4.0, 4)  # not stable yet
    sup.timer(started + 63.9)
    sup.started("gateway", 51, started + 64.0)
    assert sup.exited("gateway", 1, started + 124.0)[0] == Wait("gateway", 1, 0.5, 5)  # up 60 s: reset


def test_a_unit_that_keeps_crashing_is_given_up_and_the_others_keep_running() -> None:
    sup = _stack()
    now = 1.0
    for restart in range(1, 5):
        (wait,) = sup.exited("executor", 78, now)
        assert wait == Wait("executor", 78, 0.5 * 2 ** (restart - 1), restart)
        now += wait.delay_s
        sup.timer(now)
        sup.started("executor", 60 + restart, now)
        now += 0.5
    assert sup.exited("executor", 78, now) == [GiveUp("executor", 78, 5, 60.0)]
    assert sup.given_up("executor")
    assert sup.next_timer() is None
    assert sup.timer(now + 1000) == []
    assert [u.phase for u in sup.units.values()] == ["running", "running", "running", "given up"]
    with pytest.raises(ValueError, match="not running"):
        sup.exited("executor", 78, now + 1)
    # the others are still supervised as before
    assert sup.exited("nats", -9, now + 2) == [Wait("nats", -9, 0.5, 1)]


def test_exits_older_than_the_window_do_not_count() -> None:
    sup = _stack(Policy(max_crashes=3, window_s=10.0))
    now = 0.0
    for _ in range(20):  # an exit every 6 s: never 3 within 10 s
        now += 6.0
        actions = sup.exited("executor", 1, now)
        assert isinstance(actions[0], Wait), actions
        now += actions[0].delay_s
        sup.timer(now)
        sup.started("executor", 1, now)
    now += 1.0
    assert isinstance(sup.exited("executor", 1, now)[0], Wait)  # 2 within 10 s
    sup.timer(now + 100)
    sup.started("executor", 2, now + 100.1)
    assert isinstance(sup.exited("executor", 1, now + 100.2)[0], Wait)  # the old ones fell out of the window


def test_exits_at_the_edge_of_the_window() -> None:
    sup = _stack(Policy(max_crashes=2, window_s=10.0, first_delay_s=0.5))
    assert isinstance(sup.exited("executor", 1, 1.0)[0], Wait)
    sup.timer(1.5)
    sup.started("executor", 2, 1.5)
    assert isinstance(sup.exited("executor", 1, 11.0)[0], Wait)  # exactly window_s later: the first is out
    sup.timer(12.0)
    sup.started("executor", 3, 12.0)
    assert sup.exited("executor", 1, 20.99) == [GiveUp("executor", 1, 2, 10.0)]


def test_a_start_that_fails_counts_as_an_exit() -> None:
    sup = _stack()
    sup.exited("nats", -9, 5.0)
    assert sup.timer(5.5) == [Start("nats")]
    assert sup.exited("nats", None, 6.0) == [Wait("nats", None, 1.0, 2)]
    unit = sup.units["nats"]
    assert (unit.last_exit, unit.exited_once) == (None, True)
    assert sup.timer(7.0) == [Start("nats")]
    assert unit.restarts == 2


def test_a_registered_unit_that_never_started_can_fail_to_start() -> None:
    sup = Supervisor()
    assert sup.add("monitor", 0.0) == [Start("monitor")]
    assert sup.exited("monitor", 78, 0.3) == [Wait("monitor", 78, 0.5, 1)]


def test_stop_stops_what_runs_in_reverse_order_and_nothing_restarts() -> None:
    sup = _stack()
    sup.add("sim", 0.2)
    sup.started("sim", 70, 0.3)
    sup.exited("gateway", 1, 5.0)  # waiting for its restart
    assert sup.stop_requested() == [Stop("sim"), Stop("executor"), Stop("cache"), Stop("nats")]
    assert sup.units["gateway"].phase == "stopped"
    assert sup.timer(100.0) == []
    assert sup.next_timer() is None
    assert sup.exited("executor", -15, 6.0) == []  # the stop itself: no restart
    assert sup.units["executor"].phase == "stopped"
    assert sup.stop_requested() == []  # a second Ctrl-C changes nothing
    assert sup.add("late", 7.0) == []  # registered after the stop: never started
    assert sup.units["late"].phase == "stopped"


def test_a_unit_starting_when_the_stop_comes_is_stopped_once_started() -> None:
    sup = _stack()
    sup.exited("nats", -9, 1.0)
    sup.timer(1.5)  # nats is being started
    actions = sup.stop_requested()
    assert actions == [Stop("executor"), Stop("gateway"), Stop("cache"), Stop("nats")]
    assert sup.started("nats", 99, 2.0) == [Stop("nats")]


def test_a_unit_given_up_is_not_stopped() -> None:
    sup = _stack(Policy(max_crashes=1))
    assert sup.exited("gateway", 2, 1.0) == [GiveUp("gateway", 2, 1, 60.0)]
    assert Stop("gateway") not in sup.stop_requested()


def test_events_out_of_turn_are_refused() -> None:
    sup = _stack()
    with pytest.raises(ValueError, match="already supervised"):
        sup.add("nats", 0.0)
    with pytest.raises(ValueError, match="not being started"):
        sup.started("nats", 1, 0.0)
    sup.exited("nats", 1, 1.0)
    with pytest.raises(ValueError, match="not running"):
        sup.exited("nats", 1, 1.1)
    with pytest.raises(KeyError):
        sup.exited("nobody", 1, 1.0)


@pytest.mark.parametrize(
    "policy",
    [
        {"first_delay_s": 0},
        {"first_delay_s": 40},
        {"factor": 0.5},
        {"stable_s": 0},
        {"max_crashes": 0},
        {"window_s": 0},
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"required|delay"):
        Policy(**policy)  # type: ignore[arg-type]


def test_exits_are_described() -> None:
    assert describe_exit(None) == "could not be started"
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(78) == "exited with code 78"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL (signal 9)"
    assert describe_exit(-200) == "was killed by signal 200"

"""The admin dashboard in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium):
log in with an admin token, see a simulated terminal appear, submit an order, see it filled, and see an alert
open and resolve; open the page on a desk that already traded and see the recent orders at once, and come
back from a dropped connection with exactly the events missed; close a position from its row (after a
confirmation) and see an orphan's conflict show and clear in the consistency panel; set and remove its stops
from the row (an invalid entry refused on the page); filter the history and
export it as CSV; read the latency chart's layout (and, with HEDGEBRIDGE_SCREENSHOT_DIR, keep screenshots to
look at). The servers and services run in this test's event loop; the browser calls run in a thread.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import os
import re
import shutil
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common import auth, streams
from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.gateway.server import Gateway
from hedgebridge.monitor.config import MonitorConfig
from hedgebridge.monitor.service import Monitor
from hedgebridge.protocol import Alert, CloseOrder, OpenOrder, pack, subjects, utcnow
from hedgebridge.protocol.errors import CloseCode
from hedgebridge.protocol.messages import Side

from ..conftest import StartSims
from ..helpers import order, wait_for
from .conftest import StartCoordinator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e '.[dev]')"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


class Browser:
    """A headless Chromium; every call runs in a worker thread so the services keep running."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def texts(self, css: str) -> list[str]:
        """The text of every element matching ``css`` (whitespace collapsed), read in one script (no stale
        elements)."""
        script = "return Array.from(document.querySelectorAll(arguments[0]), (e) => e.innerText);"
        found: list[str] = await self.call(self.driver.execute_script, script, css)
        return [" ".join(text.split()) for text in found]  # table cells are tab-separated in innerText

    async def type_into(self, css: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        def write() -> None:
            element = self.driver.find_element(By.CSS_SELECTOR, css)
            element.clear()
            element.send_keys(text)

        await self.call(write)

    async def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for failure messages
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = await asyncio.to_thread(webdriver.Chrome, options=options, service=Service(CHROMEDRIVER))
    try:
        yield Browser(driver)
    finally:
        await asyncio.to_thread(driver.quit)


@pytest.fixture
async def monitor(nats_server: NatsServer, cache_server: ValkeyServer) -> AsyncIterator[Monitor]:
    config = MonitorConfig(
        nats_url=nats_server.url,
        redis_url=f"{cache_server.url}/0",
        id="mon-browser",
        margin_level_pct=1_000_000.0,  # any open position puts the account under it
        report_ms=200,
        evaluate_ms=100,
        recovery_samples=1,
    )
    service = Monitor(config)
    await service.start()
    yield service
    await service.stop()


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, dict(response.headers), response.read()


async def test_the_page_is_served_with_a_strict_policy(gateway: Gateway) -> None:
    base = f"http://127.0.0.1:{gateway.port}"
    status, headers, body = await asyncio.to_thread(_get, f"{base}/admin")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert b'<script src="/admin/app.js"' in body
    status, headers, body = await asyncio.to_thread(_get, f"{base}/admin/app.js")
    assert headers["Content-Type"].startswith("text/javascript")
    assert b"hedgebridge.v1" in body
    with pytest.raises(urllib.error.HTTPError) as missing:
        await asyncio.to_thread(_get, f"{base}/admin/secret.txt")
    assert missing.value.code == 404


async def test_log_in_see_a_terminal_order_and_an_alert_open_and_resolve(
    gateway: Gateway,
    secret: str,
    sims: StartSims,
    monitor: Monitor,
    nc: NatsClient,
    browser: Browser,
) -> None:
    await browser.call(browser.driver.get, f"http://127.0.0.1:{gateway.port}/admin")

    async def has_form() -> bool:
        return bool(await browser.texts("#login-form"))

    await wait_for(has_form, "the login form")

    # a token that is not valid is refused and the form stays
    await browser.type_into("#login-token", "not-a-token")
    await browser.click("#login-button")

    async def login_error() -> bool:
        return any("1008" in t for t in await browser.texts("#login-error"))

    await wait_for(login_error, "the refusal to show")

    token = auth.mint_token(secret, role="admin", subject="admin-browser")
    await browser.type_into("#login-token", token)
    await browser.click("#login-button")

    async def logged_in() -> bool:
        return any("connected as admin-browser (admin)" in t for t in await browser.texts("#status"))

    await wait_for(logged_in, "the dashboard to log in")
    assert token not in await browser.call(lambda: browser.driver.current_url)

    [terminal] = await sims(["WEB-1"], fill_latency_ms=1)

    async def row_connected() -> bool:
        rows = await browser.texts('#terminals tr[data-account="WEB-1"]')
        return bool(rows) and "connected" in rows[0] and "disconnected" not in rows[0]

    await wait_for(row_connected, "the terminal to appear connected in the table")

    async def has_prices() -> bool:
        return bool(await browser.texts('#prices tr[data-symbol="EURUSD"]'))

    await wait_for(has_prices, "price ticks")

    await browser.type_into("#order-account", "WEB-1")
    await browser.type_into("#order-symbol", "EURUSD")
    await browser.type_into("#order-volume", "0.1")
    await browser.click("#order-submit")

    async def filled() -> bool:
        feed = await browser.texts("#feed li")
        return any("ORDER_RESULT WEB-1 FILLED OPEN EURUSD BUY" in line for line in feed)

    await wait_for(filled, "the order to show FILLED in the feed")
    assert "FILLED" in (await browser.texts("#order-result"))[0]

    page: list[str] = []

    def state() -> str:
        return f"page {page}, the monitor's open alerts {sorted(monitor.alerts.open)}"

    async def alert_open() -> bool:
        page[:] = await browser.texts("#alerts tbody tr")
        page.append(f"console: {await browser.call(browser.driver.get_log, 'browser')}")
        return any(line.startswith("CRITICAL margin_level WEB-1") for line in page)

    await wait_for(alert_open, lambda: f"the margin alert to open on the page: {state()}", timeout_s=20)

    def positions_are(count: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await browser.texts('#terminals tr[data-account="WEB-1"] td:nth-child(6)') == [count]

        return check

    await wait_for(positions_are("1"), "one open position in the table")

    [ticket] = [str(t) for t in terminal.account.positions]
    closed = await order(nc, CloseOrder(account_id="WEB-1", mt_ticket=ticket))
    assert closed.status == "FILLED"

    async def alert_resolved() -> bool:
        page[:] = await browser.texts("#alerts tbody tr")
        feed = await browser.texts("#feed li")
        gone = not any("margin_level WEB-1" in line for line in page)
        return gone and any("ALERT RESOLVED WEB-1 margin_level" in line for line in feed)

    await wait_for(alert_resolved, lambda: f"the margin alert to resolve on the page: {state()}", timeout_s=20)
    await wait_for(positions_are("0"), "no open position in the table")

    async def latency_shown() -> bool:
        return bool(await browser.texts('#latency tr[data-hop="execution"]'))

    await wait_for(latency_shown, "the execution hop in the latency table")


async def test_the_page_opens_with_recent_orders_and_resumes_after_a_reconnect_without_gaps(
    gateway: Gateway, secret: str, sims: StartSims, nc: NatsClient, browser: Browser
) -> None:
    [terminal] = await sims(["WEB-2"], fill_latency_ms=1, tick_interval_ms=0)
    before = await order(nc, OpenOrder(account_id="WEB-2", symbol="EURUSD", side="BUY", volume=0.1))
    assert before.status == "FILLED"

    await browser.call(browser.driver.get, f"http://127.0.0.1:{gateway.port}/admin")

    async def has_form() -> bool:
        return bool(await browser.texts("#login-form"))

    await wait_for(has_form, "the login form")
    await browser.type_into("#login-token", auth.mint_token(secret, role="admin", subject="admin-browser"))
    await browser.click("#login-button")

    async def feed() -> list[str]:
        return await browser.texts("#feed li")

    async def shows_the_earlier_order() -> bool:
        return any("ORDER_RESULT WEB-2 FILLED OPEN EURUSD BUY" in line for line in await feed())

    # the order filled before the page opened is in "Orders and actions" at once, from the stream's history
    await wait_for(shows_the_earlier_order, lambda: "the earlier order in the feed", timeout_s=20)
    kept = await browser.texts("#feed li.history[data-kind=ORDER_RESULT][data-seq]")
    assert len(kept) == 1

    async def row_connected() -> bool:
        rows = await browser.texts('#terminals tr[data-account="WEB-2"]')
        return bool(rows) and "connected" in rows[0] and "disconnected" not in rows[0]

    await wait_for(row_connected, "the terminal's row from the last TERMINAL_STATUS")

    # the connection drops; an order fills while the page is away; it comes back with exactly that
    for session in list(gateway.clients.sessions):
        session.retire(CloseCode.GOING_AWAY, "gateway shutting down")
    missed = await order(nc, OpenOrder(account_id="WEB-2", symbol="EURUSD", side="SELL", volume=0.2))
    assert missed.status == "FILLED"

    async def resumed() -> bool:
        status = " ".join(await browser.texts("#status"))
        return "resumed" in status and "0 events replayed" not in status

    await wait_for(resumed, lambda: "the page to resume after the reconnect", timeout_s=20)

    async def shows_the_missed_order() -> bool:
        return any("ORDER_RESULT WEB-2 FILLED OPEN EURUSD SELL" in line for line in await feed())

    await wait_for(shows_the_missed_order, "the order filled while the page was away")
    script = "return Array.from(document.querySelectorAll('#feed li[data-seq]'), (e) => e.dataset.seq);"
    seqs = [int(s) for s in await browser.call(browser.driver.execute_script, script)]
    assert len(seqs) == len(set(seqs))  # nothing twice
    assert sorted(seqs, reverse=True) == seqs  # newest on top, in the stream's order
    assert terminal.connected.is_set()


async def log_in(browser: Browser, gateway: Gateway, secret: str) -> None:
    await browser.call(browser.driver.get, f"http://127.0.0.1:{gateway.port}/admin")

    async def has_form() -> bool:
        return bool(await browser.texts("#login-form"))

    await wait_for(has_form, "the login form")
    await browser.type_into("#login-token", auth.mint_token(secret, role="admin", subject="admin-browser"))
    await browser.click("#login-button")

    async def logged_in() -> bool:
        return any("connected as admin-browser (admin)" in t for t in await browser.texts("#status"))

    await wait_for(logged_in, "the dashboard to log in")


async def test_positions_close_with_a_confirmation_and_conflicts_show_and_clear(
    gateway: Gateway, secret: str, sims: StartSims, nc: NatsClient, start_coordinator: StartCoordinator,
    browser: Browser,
) -> None:  # fmt: skip
    [terminal] = await sims(["WEB-3"], fill_latency_ms=1, tick_interval_ms=0)
    await start_coordinator()
    opened = await order(nc, OpenOrder(account_id="WEB-3", symbol="EURUSD", side="BUY", volume=0.1))
    assert opened.status == "FILLED"
    await log_in(browser, gateway, secret)

    async def rows() -> list[str]:
        return await browser.texts("#positions tbody tr")

    async def one_position() -> bool:
        return [r.split()[:5] for r in await rows()] == [["WEB-3", str(opened.mt_ticket), "EURUSD", "BUY", "0.1"]]

    await wait_for(one_position, lambda: "the system's position in the table")

    # a position opened outside the system: a conflict, in the panel and among the positions
    orphan = str(terminal.account.open_outside("GBPUSD", "SELL", 0.7, utcnow() - timedelta(minutes=5)))
    await terminal.send(terminal.account.position_update(utcnow()))
    panel: list[str] = []

    async def conflict_shown() -> bool:
        panel[:] = [*await browser.texts("#consistency-status"), *await browser.texts("#conflicts tbody tr")]
        return any(line.split()[:3] == ["ORPHAN_POSITION", "WEB-3", orphan] for line in panel) and any(
            "1 open conflict" in line for line in panel
        )

    await wait_for(conflict_shown, lambda: f"the orphan in the conflicts panel: {panel}", timeout_s=20)
    row = f'#positions tr[data-ticket="{orphan}"]'

    async def orphan_listed() -> bool:
        return [t.split()[:5] for t in await browser.texts(row)] == [["WEB-3", orphan, "GBPUSD", "SELL", "0.7"]]

    await wait_for(orphan_listed, "the orphan among the positions")
    assert await browser.texts(f'{row} td.row-actions button[data-action="close"]') == ["Close"]
    # stop loss and take profit: none on this position
    assert await browser.texts(f"{row} td:nth-child(7), {row} td:nth-child(8)") == ["-", "-"]

    await browser.call(_keep_screenshot, browser, "positions", "positions")
    # the close button asks first: cancelled, nothing is sent
    await browser.click(f'{row} button[data-action="close"]')

    async def asking() -> bool:
        shown = await browser.call(browser.driver.execute_script, "return document.getElementById('confirm').open;")
        return bool(shown)

    await wait_for(asking, "the confirmation dialog")
    [question] = await browser.texts("#confirm-text")
    assert question == f"Close SELL 0.7 GBPUSD, ticket {orphan}, on WEB-3?"
    await browser.click("#confirm-cancel")
    await wait_for(lambda: _not(asking), "the dialog to close")
    assert await browser.texts("#positions-result") == [""]
    assert int(orphan) in terminal.account.positions

    # confirmed: CLOSE_ORDER through the client API; the row goes, the reconciliation clears the conflict
    await browser.click(f'{row} button[data-action="close"]')
    await wait_for(asking, "the confirmation dialog again")
    await browser.click("#confirm-ok")

    result: list[str] = []

    async def closed() -> bool:
        result[:] = await browser.texts("#positions-result")
        return bool(result) and result[0].startswith(f"close ticket {orphan}: FILLED CLOSE 0.7 @ ")

    await wait_for(closed, lambda: f"the close's result, got {result}")
    await wait_for(lambda: _gone(browser, row), "the closed position to leave the table")
    assert int(orphan) not in terminal.account.positions

    async def consistent() -> bool:
        status = await browser.texts("#consistency-status")
        return bool(status) and status[0].startswith("consistent") and not await browser.texts("#conflicts tbody tr")

    await wait_for(consistent, "the panel to show the desk consistent again", timeout_s=20)
    assert await one_position()


def _keep_screenshot(browser: Browser, element_id: str, name: str) -> None:
    """The page scrolled to an element, kept in HEDGEBRIDGE_SCREENSHOT_DIR when set (to look at)."""
    shots = os.environ.get("HEDGEBRIDGE_SCREENSHOT_DIR")
    if not shots:
        return
    browser.driver.execute_script("document.getElementById(arguments[0]).scrollIntoView();", element_id)
    Path(shots).mkdir(parents=True, exist_ok=True)
    browser.driver.save_screenshot(str(Path(shots) / f"{name}.png"))


async def _not(check: Callable[[], Awaitable[bool]]) -> bool:
    return not await check()


async def _gone(browser: Browser, css: str) -> bool:
    return not await browser.texts(css)


async def test_positions_stops_are_modified_from_the_row_and_an_invalid_entry_is_refused(
    gateway: Gateway, secret: str, sims: StartSims, nc: NatsClient, browser: Browser
) -> None:
    [terminal] = await sims(["WEB-6"], fill_latency_ms=1, tick_interval_ms=0)  # no tick: the price stays
    opened = await order(nc, OpenOrder(account_id="WEB-6", symbol="EURUSD", side="BUY", volume=0.1))
    assert opened.status == "FILLED"
    assert opened.price is not None
    ticket = str(opened.mt_ticket)
    row = f'#positions tr[data-ticket="{ticket}"]'
    stops = f"{row} td:nth-child(7), {row} td:nth-child(8)"
    await log_in(browser, gateway, secret)

    async def stops_are(sl: str, tp: str) -> bool:
        return await browser.texts(stops) == [sl, tp]

    await wait_for(lambda: stops_are("-", "-"), "the position, without stops, in the table")
    assert await browser.texts(f'{row} td.row-actions button[data-action="modify"]') == ["Modify"]
    sent_before = len(terminal.account.received)

    async def open_dialog() -> list[str]:
        """Click the row's Modify; the fields' prefilled values."""
        await browser.click(f'{row} button[data-action="modify"]')
        await wait_for(lambda: _dialog_open(browser, "modify"), "the modify dialog")
        script = "return ['modify-sl', 'modify-tp'].map((id) => document.getElementById(id).value);"
        prefilled: list[str] = await browser.call(browser.driver.execute_script, script)
        return prefilled

    async def enter(sl: str | None, tp: str | None) -> None:
        """Enter the stops given (None: the field as it is) and confirm."""
        for css, value in (("#modify-sl", sl), ("#modify-tp", tp)):
            if value is not None:
                await browser.type_into(css, value)
        await browser.click("#modify-ok")

    # refused on the page: not a number, a negative price, nothing changed; the dialog stays, nothing is sent
    assert await open_dialog() == ["", ""]
    for bad_sl, bad_tp, problem in (
        ("abc", "", 'stop loss: "abc" is not a price (a number, 0 or more)'),
        ("", "-1", 'take profit: "-1" is not a price (a number, 0 or more)'),
        ("", "", "nothing to change"),
    ):
        await enter(bad_sl, bad_tp)
        assert await browser.texts("#modify-error") == [problem]
        assert await _dialog_open(browser, "modify")
    await browser.click("#modify-cancel")
    await wait_for(lambda: _not(lambda: _dialog_open(browser, "modify")), "the dialog to close")
    assert await browser.texts("#positions-result") == [""]  # "sent…" shows the moment a request goes

    # set both: MODIFY_ORDER through the client API; the result under the table, the stops in the row
    sl, tp = round(opened.price - 0.005, 5), round(opened.price + 0.005, 5)
    assert await open_dialog() == ["", ""]
    await enter(str(sl), str(tp))
    result: list[str] = []

    async def modified(text: str) -> bool:
        result[:] = await browser.texts("#positions-result")
        return bool(result) and result[0].startswith(f"modify ticket {ticket}: FILLED MODIFY") and text in result[0]

    await wait_for(lambda: modified(f"SL {sl} TP {tp}"), lambda: f"the modify's result, got {result}")
    await wait_for(lambda: stops_are(str(sl), str(tp)), "the new stops in the table (POSITION_UPDATE)")
    position = terminal.account.positions[int(ticket)]
    assert (position.sl, position.tp) == (sl, tp)
    assert len(terminal.account.received) == sent_before + 1  # the refused entries sent nothing

    # prefilled with the stops now; 0 removes the stop loss, the take profit left as it is is kept
    assert await open_dialog() == [str(sl), str(tp)]
    await enter("0", None)
    await wait_for(lambda: modified(f"SL none TP {tp}"), lambda: f"the second modify's result, got {result}")
    await wait_for(lambda: stops_are("-", str(tp)), "the stop loss removed in the table")
    assert (position.sl, position.tp) == (0.0, tp)


async def _dialog_open(browser: Browser, dialog_id: str) -> bool:
    script = "return document.getElementById(arguments[0]).open;"
    return bool(await browser.call(browser.driver.execute_script, script, dialog_id))


async def test_history_view_filters_and_exports_csv_and_the_latency_chart_reads_well(
    gateway: Gateway, secret: str, sims: StartSims, monitor: Monitor, nc: NatsClient, browser: Browser,
    tmp_path: Path,
) -> None:  # fmt: skip
    await sims(["WEB-4", "WEB-5"], fill_latency_ms=1, tick_interval_ms=0)
    tickets = []
    trades: list[tuple[str, Side]] = [("WEB-4", "BUY"), ("WEB-5", "SELL"), ("WEB-4", "SELL")]
    for account, side in trades:
        result = await order(nc, OpenOrder(account_id=account, symbol="EURUSD", side=side, volume=0.1))
        assert result.status == "FILLED"
        tickets.append(str(result.mt_ticket))
    assert (await order(nc, CloseOrder(account_id="WEB-4", mt_ticket=tickets[0]))).status == "FILLED"
    js = nc.jetstream()
    await streams.ensure_present(js, streams.alerts_stream())
    now = utcnow()
    alert = Alert(
        key="desk_note:WEB-4", rule="desk_note", account_id="WEB-4", state="OPEN", severity="CRITICAL",
        code="MARGIN_LOW", message='=1+1, "quoted"', opened_at=now, updated_at=now, seq=1,
    )  # fmt: skip
    await js.publish(subjects.alert("desk_note", "WEB-4"), pack(alert))
    await log_in(browser, gateway, secret)

    # WEB-4's trades and alerts of the last hour
    await browser.type_into("#history-account", "WEB-4")
    await browser.type_into("#history-since", "1h")
    for kind in ("ORDER_RESULT", "ACTION_STATE", "CONFLICT"):
        await browser.click(f'input[name=history-type][value="{kind}"]')
    shown: list[str] = []

    async def history_rows() -> bool:
        await browser.click("#history-load")
        await wait_for(lambda: _loaded(browser), "the history page")
        shown[:] = await browser.texts("#history tbody tr")
        trades = [_type_of(line) for line in shown if "ALERT" not in line]  # the monitor's margin alerts come too
        return trades == ["OPENED", "OPENED", "CLOSED"] and any("ALERT WEB-4 desk_note" in line for line in shown)

    await wait_for(history_rows, lambda: f"WEB-4's trades and the alert in the history view, got {shown}")
    assert all("WEB-4" in line for line in shown)
    assert any(f"ticket {tickets[0]}" in line for line in shown if "CLOSED" in line)
    assert (await browser.texts("#history-status"))[0] == f"{len(shown)} events"

    # a time that is neither a duration nor ISO 8601 is refused on the page, nothing is asked
    await browser.type_into("#history-since", "yesterday")
    await browser.click("#history-load")
    assert (await browser.texts("#history-status"))[0].startswith('"yesterday" is neither a duration')
    await browser.type_into("#history-since", "1h")
    await browser.click("#history-load")
    await wait_for(lambda: _loaded(browser), "the history page again")
    shown = await browser.texts("#history tbody tr")

    # CSV export: the rows shown, every column, quoted where needed, a formula defused
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    await browser.call(
        browser.driver.execute_cdp_cmd,
        "Browser.setDownloadBehavior",
        {"behavior": "allow", "downloadPath": str(downloads)},
    )
    await browser.click("#history-export")

    def saved() -> bool:
        return any(p.suffix == ".csv" for p in downloads.iterdir())

    await wait_for(saved, "the CSV file")
    [path] = [p for p in downloads.iterdir() if p.suffix == ".csv"]
    table = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    assert [r["type"] for r in table] == [_type_of(line) for line in shown]
    assert list(table[0]) == [
        "time", "type", "accounts", "kind", "symbol", "side", "volume", "price", "profit", "status", "code",
        "actionId", "positionId", "mtTicket", "message", "stream", "seq",
    ]  # fmt: skip
    first = next(r for r in table if r["type"] == "OPENED")  # a margin alert of the monitor's may come first
    [closing] = [r for r in table if r["type"] == "CLOSED"]
    [noted] = [r for r in table if r["kind"] == "desk_note"]
    assert (first["accounts"], first["symbol"], first["side"], first["volume"], first["status"]) == (
        "WEB-4", "EURUSD", "BUY", "0.1", "SUCCESS",
    )  # fmt: skip
    assert (closing["mtTicket"], closing["stream"]) == (tickets[0], "HB_EVENTS")
    assert closing["profit"] != ""
    assert (noted["kind"], noted["status"], noted["message"]) == ("desk_note", "OPEN", '\'=1+1, "quoted"')
    assert noted["stream"] == "HB_ALERTS"
    times = [r["time"] for r in table]
    assert times == sorted(times)

    # the latency chart: a time series over the whole width, labels apart, then a look at it
    async def layout() -> dict[str, Any]:
        script = "return document.getElementById('latency-chart').dataset.layout || '{}';"
        found: dict[str, Any] = json.loads(await browser.call(browser.driver.execute_script, script))
        return found

    async def enough_points() -> bool:
        drawn = await layout()
        return int(drawn.get("points", 0)) >= 12 and int(drawn.get("spanMs", 0)) >= 3000

    await wait_for(enough_points, "a dozen latency samples over 3 s on the chart", timeout_s=30)
    drawn = await layout()
    plot = drawn["plot"]
    left, right = drawn["xExtent"]
    assert right - left >= 0.95 * (plot["right"] - plot["left"])  # first to last sample: the whole width
    ys = [tick["y"] for tick in drawn["yTicks"]]
    assert len(ys) >= 3
    assert all(a - b >= 20 for a, b in itertools.pairwise(ys))  # bottom to top, no label on another
    xs = drawn["xTicks"]
    assert len(xs) >= 2
    assert all(b["x"] - a["x"] >= (a["width"] + b["width"]) / 2 + 8 for a, b in itertools.pairwise(xs))
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", tick["label"]) for tick in xs)
    assert {s["name"] for s in drawn["series"]} >= {"execution"}
    assert "execution" in await browser.texts("#latency-legend li")

    def screenshot() -> bytes:
        """The chart as the browser drew it (kept in HEDGEBRIDGE_SCREENSHOT_DIR too, with the whole page, when
        set: to look at)."""
        from selenium.webdriver.common.by import By

        canvas = browser.driver.find_element(By.ID, "latency-chart")
        browser.driver.execute_script("arguments[0].scrollIntoView();", canvas)
        png: bytes = canvas.screenshot_as_png
        (tmp_path / "latency-chart.png").write_bytes(png)
        if shots := os.environ.get("HEDGEBRIDGE_SCREENSHOT_DIR"):
            Path(shots).mkdir(parents=True, exist_ok=True)
            (Path(shots) / "latency-chart.png").write_bytes(png)
        _keep_screenshot(browser, "latency-chart", "dashboard")
        _keep_screenshot(browser, "history", "history")
        return png

    png = await browser.call(screenshot)
    assert png.startswith(b"\x89PNG")


async def _loaded(browser: Browser) -> bool:
    status = await browser.texts("#history-status")
    return bool(status) and status[0] not in ("", "loading…")


def _type_of(line: str) -> str:
    """The type column of a history row (after the date and time)."""
    return next(word for word in line.split() if word in ("OPENED", "CLOSED", "ORDER_RESULT", "ALERT", "CONFLICT"))

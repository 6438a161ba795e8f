"""The admin dashboard in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium):
log in with an admin token, see a simulated terminal appear, submit an order, see it filled, and see an alert
open and resolve; open the page on a desk that already traded and see the recent orders at once, and come
back from a dropped connection with exactly the events missed. The servers and services run in this test's
event loop; the browser calls run in a thread.
"""

from __future__ import annotations

import asyncio
import shutil
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common import auth
from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.gateway.server import Gateway
from hedgebridge.monitor.config import MonitorConfig
from hedgebridge.monitor.service import Monitor
from hedgebridge.protocol import CloseOrder, OpenOrder
from hedgebridge.protocol.errors import CloseCode

from ..conftest import StartSims
from ..helpers import order, wait_for

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

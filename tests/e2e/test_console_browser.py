"""The web console in a real browser (Debian's chromium, driven through chromium-driver by
Selenium) against the whole stack: a tenant user signs in, finds the mail it just sent through
the SMTP door, reads the delivery attempt's reply in its timeline, adds and removes a
suppression, creates and revokes an API key, cannot open another tenant's message by URL,
switches to Japanese and signs out.

With HATO_CONSOLE_SCREENSHOTS=1 it saves screenshots of the main pages to docs/console/ (the
README shows them). `scripts/infra.sh browser-tools` installs chromium and chromium-driver;
the test is skipped without them only outside CI.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import smtplib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from shared.testing import ROOT
from tests.conftest import TENANT
from tests.e2e.conftest import OPERATOR, Api, message
from tests.e2e.test_console import add_user

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = ROOT / "docs" / "console"
WAIT = 30.0


def _have_browser() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


if not _have_browser() and os.environ.get("CI") != "true":
    pytest.skip(
        "chromium and chromium-driver are not installed (scripts/infra.sh browser-tools "
        "installs them; in CI this test always runs)",
        allow_module_level=True,
    )


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--lang=en-US",
        "--no-proxy-server",
    ):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


async def until(check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll ``check`` until it gives something true; its last answer, or AssertionError.
    The browser is driven in a thread: this test's event loop runs the sink the mail is
    delivered to, and must not wait on the browser."""
    deadline = time.monotonic() + timeout
    while True:
        found = await asyncio.to_thread(check)
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout} s")
        await asyncio.sleep(0.25)


def shoot(driver: Any, name: str, *, width: int = 1280, height: int = 1000) -> None:
    """A screenshot for the README, when asked for."""
    if os.environ.get("HATO_CONSOLE_SCREENSHOTS") != "1":
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(width, height)
    time.sleep(0.2)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1280, 1000)


def send_by_smtp(api: Api, to: list[str], subject: str) -> None:
    port = int(api.stack.env["HATO_INGEST_SMTP_PORT"])
    mail = EmailMessage()
    mail["From"] = "=?UTF-8?B?44K344On44OD44OX?= <orders@shop.test>"  # ショップ
    mail["To"], mail["Subject"] = ", ".join(to), subject
    mail.set_content("ご注文ありがとうございました。\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=WAIT) as smtp:
        smtp.ehlo()
        smtp.send_message(mail, from_addr="orders@shop.test", to_addrs=to)


UNKNOWN = "550 5.1.1 <jiro@mobile.test>: Recipient address rejected: User unknown"
BUSY = "450 4.2.1 <saburo@mobile.test>: mailbox busy, try again later"


def refuse(address: str) -> str | None:
    """The sink's answer to RCPT: one unknown user, one busy mailbox, the rest taken."""
    return {"jiro@mobile.test": UNKNOWN, "saburo@mobile.test": BUSY}.get(address.strip("<>"))


async def test_a_tenant_user_follows_its_mail_in_the_browser(api: Api, browser: Any) -> None:
    """Sign in, find the SMTP mail by recipient, see the attempt's reply in its timeline; add
    and remove a suppression; create and revoke an API key; another tenant's message is not
    found by URL; the page switches to Japanese; sign out."""
    password = await add_user(api, "desk@shop.test")
    rival = await api.http.post(
        "/v1/messages",
        json=message(**{"from": "x@rival.test", "to": ["someone@ok.test"]}),
        headers=api.as_tenant(api.rival_key),
    )
    assert rival.status_code == 202
    api.sink.rcpt_reply = refuse
    try:
        await follow(api, browser, password, rival.json()["id"])
    finally:
        api.sink.rcpt_reply = lambda _address: None


async def follow(api: Api, browser: Any, password: str, rival_id: str) -> None:
    """The test's steps in the browser (``browser``), signed in as desk@shop.test."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base = str(api.http.base_url).rstrip("/")
    recipients = ["taro@mobile.test", "jiro@mobile.test", "saburo@mobile.test"]
    await asyncio.to_thread(send_by_smtp, api, recipients, "ご注文の確認 (#1042)")

    page = browser.find_element
    browser.get(f"{base}/console/messages")
    assert "/console/login" in browser.current_url
    shoot(browser, "sign-in", height=600)
    page(By.NAME, "email").send_keys("desk@shop.test")
    page(By.NAME, "password").send_keys(password)
    page(By.ID, "sign-in").click()
    await until(lambda: "/console/messages" in browser.current_url)

    # Find the mail by its recipient and open its timeline.
    def found() -> Any:
        browser.get(f"{base}/console/messages")
        page(By.NAME, "recipient").send_keys("taro@mobile.test")
        page(By.ID, "search").click()
        # The results are a new page; links read before it loaded (the unfiltered list)
        # go stale. Read them once the search's URL is the browser's.
        WebDriverWait(browser, WAIT).until(lambda d: "recipient=taro" in d.current_url)
        try:
            links = browser.find_elements(By.CSS_SELECTOR, "a.message-link")
            return (links[0], links[0].text) if links else None
        except StaleElementReferenceException:
            return None

    link, text = await until(found)
    assert text == "ご注文の確認 (#1042)"
    shoot(browser, "messages")
    link.click()
    await until(lambda: "/console/messages/" in browser.current_url)
    opened = browser.current_url

    def replied() -> bool:
        browser.get(opened)
        cells = browser.find_elements(By.CSS_SELECTOR, "tr.attempt td.reply")
        return any("250 2.0.0 Ok: stored" in c.text for c in cells)

    await until(replied, timeout=60)
    timeline = page(By.TAG_NAME, "main").text
    assert UNKNOWN in timeline and BUSY in timeline  # the bounce and the deferral
    assert "ショップ <orders@shop.test>" in page(By.TAG_NAME, "main").text  # decoded
    assert "127.0.0.2" in page(By.CSS_SELECTOR, "table.timeline").text  # the MX
    shoot(browser, "message", height=1300)

    # Another tenant's message is not found by its URL.
    browser.get(f"{base}/console/messages/{rival_id}")
    assert "Not found" in page(By.TAG_NAME, "h1").text
    assert "someone@ok.test" not in browser.page_source

    # Add a suppression, then remove it after the confirmation.
    browser.get(f"{base}/console/suppressions")
    page(By.ID, "suppression-address").send_keys("hanako@mobile.test")
    page(By.ID, "suppression-add").click()
    await until(
        lambda: browser.find_elements(By.CSS_SELECTOR, 'tr[data-address="hanako@mobile.test"]')
    )
    assert await api.store.suppressions.suppressed(TENANT, ["hanako@mobile.test"])
    shoot(browser, "suppressions", height=700)
    page(By.CSS_SELECTOR, 'tr[data-address="hanako@mobile.test"] a.danger').click()
    page(By.ID, "confirm-remove").click()
    await until(lambda: "done=removed" in browser.current_url)
    assert not browser.find_elements(By.CSS_SELECTOR, 'tr[data-address="hanako@mobile.test"]')
    assert not await api.store.suppressions.suppressed(TENANT, ["hanako@mobile.test"])

    # Create an API key (shown once, and it works), then revoke it.
    browser.get(f"{base}/console/keys")
    page(By.ID, "key-name").send_keys("order system")
    page(By.ID, "key-create").click()
    key = (await until(lambda: browser.find_elements(By.ID, "new-secret")))[0].text
    assert key.startswith("hato_")
    answer = await api.http.get("/v1/suppressions", headers=api.as_tenant(key))
    assert answer.status_code == 200
    shoot(browser, "keys", height=800)
    prefix = key.split("_")[1]
    browser.get(f"{base}/console/keys")
    page(By.CSS_SELECTOR, f'tr[data-prefix="{prefix}"] button.revoke').click()
    browser.switch_to.alert.accept()  # console.js asks first
    await until(lambda: "done=revoked" in browser.current_url)
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-prefix="{prefix}"]')
    assert prefix not in [k["_id"] for k in await api.store.directory.api_keys(TENANT)]

    # The other pages, for the README (a webhook whose receiver is not there, to show its
    # deliveries failing); then Japanese, on a phone's screen too.
    hook = await api.http.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/hato-events"}, headers=api.as_tenant()
    )
    assert hook.status_code == 201
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    until_now = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    replayed = await api.http.post(
        f"/v1/webhooks/{hook.json()['id']}/replay",
        json={"since": since, "until": until_now},
        headers=api.as_tenant(),
    )
    assert replayed.status_code == 200, replayed.text
    for name in ("overview", "domains", "webhooks"):
        browser.get(f"{base}/console/{name}")
        assert page(By.TAG_NAME, "h1").text
        shoot(browser, name, height=1000)
    browser.get(f"{base}/console/overview")
    page(By.ID, "lang-ja").click()
    await until(lambda: "概要" in page(By.TAG_NAME, "h1").text)
    assert "メッセージ" in page(By.TAG_NAME, "nav").text
    shoot(browser, "overview-ja", height=1000)
    browser.get(opened)
    await until(lambda: "配信済み" in page(By.TAG_NAME, "main").text)
    shoot(browser, "message-ja-phone", width=390, height=1400)

    page(By.ID, "sign-out").click()
    await until(lambda: "/console/login" in browser.current_url)
    browser.get(f"{base}/console/keys")
    assert "/console/login" in browser.current_url
    assert OPERATOR not in browser.page_source
    for process in api.stack.processes.values():  # no secret reaches a log
        assert password not in process.log() and key not in process.log()

"""The console page at / in a real headless Chromium against a real gunicorn."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .nginx import nginx_proxy

CHROMIUM = os.environ.get("ECHO_CHROMIUM", "/usr/bin/chromium")
# Without these Chromium stalls on connections this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's sync API must not overlap the asyncio tests.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()


def rows(page: Page, kind: str):
    return page.locator(f"#log tr.{kind}")


def send(page: Page, text: str, kind: str = "text") -> None:
    page.select_option("#kind", kind)
    page.fill("#message", text)
    page.press("#message", "Enter")


def connect(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#state")).to_have_text("Ready to connect...")
    expect(page.locator("#send")).to_be_disabled()
    page.click("#connect")
    expect(page.locator("#state")).to_have_text("Open")
    expect(rows(page, "event").last).to_contain_text("Connection opened")


def test_console_echoes_text_binary_and_closes(server, page):
    connect(page, server.http_url)
    expect(page.locator("#url")).to_have_value(f"ws://127.0.0.1:{server.port}/ws")
    expect(page.locator("#url")).to_be_disabled()

    send(page, "hello ✓")
    received = rows(page, "received").last
    expect(received).to_contain_text("hello ✓")
    expect(received.locator("td").nth(1)).to_have_text("Server")
    expect(received.locator("td").nth(3)).to_have_text("text")
    expect(received.locator("td").nth(4)).to_have_text("9 B")
    expect(received.locator("td").nth(5)).to_have_text(re.compile(r"^\d+\.\d ms$"))
    expect(rows(page, "sent").last.locator("td").nth(1)).to_have_text("Client")

    send(page, "01 02 ff", kind="hex")
    received = rows(page, "received").last
    expect(received.locator("td").nth(3)).to_have_text("binary")
    expect(received.locator("td").nth(6)).to_have_text("01 02 ff")

    page.set_input_files(
        "#file",
        files=[
            {"name": "f.bin", "mimeType": "application/octet-stream", "buffer": bytes(range(70))}
        ],
    )
    page.click("#send-file")
    expect(rows(page, "received")).to_have_count(3)
    expect(rows(page, "received").last.locator("td").nth(4)).to_have_text("70 B")
    expect(rows(page, "received").last.locator("td").nth(6)).to_have_text(
        re.compile(r"^00 01 02 .* 3f …$")
    )

    send(page, XSS)
    expect(rows(page, "received").last.locator("td").nth(6)).to_have_text(XSS)
    expect(page.locator("#log img")).to_have_count(0)

    screenshot = os.environ.get("ECHO_SCREENSHOT")
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)

    page.click("#close")
    expect(rows(page, "event").last).to_have_text(
        re.compile("Connection closed. Code: 1000. Reason: Closing from client")
    )
    expect(page.locator("#state")).to_have_text("Closed")
    expect(page.locator("#connect")).to_be_enabled()
    expect(page.locator("#send")).to_be_disabled()
    assert page.dialogs == []


def test_custom_close_code_and_reason(server, page):
    connect(page, server.http_url)
    page.fill("#close-code", "4321")
    page.fill("#close-reason", "custom reason")
    page.click("#close")
    expect(rows(page, "event").last).to_contain_text("Code: 4321. Reason: custom reason")


def test_errors_are_logged(server, page):
    page.goto(server.http_url)
    page.fill("#url", "ws://127.0.0.1:9/ws")  # nothing listens on the discard port
    page.click("#connect")
    expect(rows(page, "error")).to_contain_text("Error:")
    expect(rows(page, "event").last).to_contain_text("Code: 1006")
    page.fill("#url", "ftp://127.0.0.1/ws")  # the WebSocket constructor throws
    page.click("#connect")
    expect(rows(page, "error")).to_have_count(2)
    expect(page.locator("#state")).to_have_text("Ready to connect...")


def test_bad_hex_is_an_error_not_a_send(server, page):
    connect(page, server.http_url)
    send(page, "zz", kind="hex")
    expect(rows(page, "error")).to_contain_text("is not hex bytes")
    expect(rows(page, "sent")).to_have_count(0)
    page.click("#clear")
    expect(page.locator("#log tr")).to_have_count(0)


PREFIX_SITE = """
server {
    listen 80;
    location /echo/ {
        proxy_pass http://127.0.0.1:8000/;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Host $host;
    }
}
"""


def test_page_works_behind_a_proxy_path_prefix(server, page):
    with nginx_proxy(server, PREFIX_SITE, health_path="/echo/healthz") as proxy:
        connect(page, f"{proxy.http_url}/echo/")
        expect(page.locator("#url")).to_have_value(f"ws://127.0.0.1:{proxy.port}/echo/ws")
        send(page, "through a prefix")
        expect(rows(page, "received").last).to_contain_text("through a prefix")


def test_usable_on_a_phone_with_labels_and_keyboard(server, browser):
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    page = context.new_page()
    page.goto(server.http_url)
    unlabelled = page.eval_on_selector_all(
        "input, select", "els => els.filter(e => !e.labels.length).map(e => e.id)"
    )
    assert unlabelled == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.focus("#url")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # Connect, from the keyboard
    expect(page.locator("#state")).to_have_text("Open")
    expect(page.locator("#message")).to_be_focused()
    page.keyboard.type("typed")
    page.keyboard.press("Enter")
    expect(rows(page, "received").last).to_contain_text("typed")
    context.close()


def test_console_offers_wss_over_https(tls_server, browser):
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    connect(page, tls_server.http_url)
    expect(page.locator("#url")).to_have_value(f"wss://127.0.0.1:{tls_server.port}/ws")
    send(page, "over TLS")
    expect(rows(page, "received").last).to_contain_text("over TLS")
    context.close()


ROUND_TRIP_JS = """async url => {
    const ws = new WebSocket(url, ["v2.chat.example", "chat"]);
    ws.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
    const big = "compress me ".repeat(20000);
    const bytes = new Uint8Array(70000).map((_, i) => (i * 7919) % 251);
    const echoes = [];
    for (const message of ["hello ✓", big, bytes]) {
        ws.send(message);
        echoes.push(await new Promise(resolve => { ws.onmessage = e => resolve(e.data); }));
    }
    const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
    const result = {
        protocol: ws.protocol,
        extensions: ws.extensions,
        text: echoes[0] === "hello ✓" && echoes[1] === big,
        binary: echoes[2] instanceof ArrayBuffer && same(new Uint8Array(echoes[2]), bytes),
    };
    ws.close(1000);
    return result;
}"""


def test_browser_negotiates_a_subprotocol_and_compression(server, page):
    """Chromium offers permessage-deflate and inflates every echo itself."""
    page.goto(server.http_url)
    result = page.evaluate(ROUND_TRIP_JS, f"ws://127.0.0.1:{server.port}/ws")
    assert result == {
        "protocol": "v2.chat.example",
        "extensions": "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        "text": True,
        "binary": True,
    }


def test_console_offers_subprotocols_and_shows_what_was_negotiated(server, page):
    page.goto(server.http_url)
    page.fill("#protocols", "mqtt, chat")
    page.click("#connect")
    expect(rows(page, "event").last).to_have_text(
        re.compile(
            "Connection opened. Subprotocol: mqtt. Extensions: permessage-deflate;"
            " server_max_window_bits=12; client_max_window_bits=12$"
        )
    )
    expect(page.locator("#protocols")).to_be_disabled()
    send(page, "compressed both ways")
    expect(rows(page, "received").last).to_contain_text("compressed both ways")


def test_console_without_subprotocols_says_none(gunicorn_server, page):
    connect(page, gunicorn_server(ECHO_COMPRESSION="off").http_url)
    expect(rows(page, "event").last).to_have_text(
        re.compile("Connection opened. Subprotocol: none. Extensions: none$")
    )

"""The console page at / in a real headless Chromium against a real gunicorn."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .nginx import nginx_proxy
from .servers import GUNICORN, ServerProcess

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
    expect(rows(page, "event").filter(has_text="Connection opened")).to_have_count(1)


def test_console_echoes_text_binary_and_closes(server, page):
    connect(page, server.http_url)
    expect(page.locator("#url")).to_have_value(f"ws://127.0.0.1:{server.port}/ws?hello")
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
        expect(page.locator("#url")).to_have_value(f"ws://127.0.0.1:{proxy.port}/echo/ws?hello")
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
    page.click("#test-mode summary")  # open, its fields fit too
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
    expect(page.locator("#url")).to_have_value(f"wss://127.0.0.1:{tls_server.port}/ws?hello")
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


def uptime_seconds(page: Page) -> float:
    return float(page.locator("#uptime").inner_text().split(" s", 1)[0])


def test_uptime_counts_while_open_and_keeps_its_final_value_with_the_close(server, page):
    connect(page, server.http_url)
    expect(page.locator("#uptime")).to_have_text(re.compile(r"^[1-9]\d*\.\d s$"), timeout=5000)
    page.fill("#close-code", "4000")
    page.fill("#close-reason", "bye")
    page.click("#close")
    final = page.locator("#uptime")
    expect(final).to_have_text(re.compile(r'^\d+\.\d s, closed 4000 "bye"$'))
    frozen = final.inner_text()
    page.wait_for_timeout(300)  # three of its updates, had it gone on counting
    expect(final).to_have_text(frozen)
    expect(rows(page, "event").last).to_contain_text(f"(open for {frozen.split(',')[0]})")
    page.click("#connect")  # a new connection counts from zero; the log keeps the last one
    expect(page.locator("#state")).to_have_text("Open")
    assert uptime_seconds(page) < float(frozen.split(" s")[0]) + 0.5
    expect(rows(page, "event").filter(has_text="(open for ")).to_have_count(1)


def test_probes_are_summarised_charted_and_never_logged(server, page):
    connect(page, server.http_url)
    page.check("#probe")
    summary = page.locator("#probe-summary")
    first_three = re.compile(r"^[3-9] probes echoed, 0 lost; RTT min ")
    expect(summary).to_have_text(first_three, timeout=4000)  # a probe a second, the first at once
    expect(summary).to_have_text(
        re.compile(r"RTT min \d+\.\d / median \d+\.\d / p95 \d+\.\d / max \d+\.\d ms$")
    )
    page.uncheck("#probe")
    echoed = int(summary.inner_text().split(" ", 1)[0])
    chart = page.get_by_role("img", name="Round-trip time")
    expect(chart.locator("circle.probe")).to_have_count(echoed)
    expect(chart.locator("polyline.line")).to_have_count(1)
    expect(rows(page, "sent")).to_have_count(0)  # probes do not drown the log
    expect(rows(page, "received")).to_have_count(0)
    send(page, "mine")
    expect(rows(page, "received")).to_have_count(1)
    expect(chart.locator("circle.message")).to_have_count(1)

    screenshot = os.environ.get("ECHO_SCREENSHOT")  # docs/console.png, by make screenshot
    if screenshot:
        page.click("#test-mode summary")
        page.check("#probe")
        expect(summary).to_have_text(re.compile(r"^1[0-9] probes echoed"), timeout=15000)
        page.click("#burst")
        expect(page.locator("#burst-result")).to_contain_text("out of order", timeout=15000)
        page.screenshot(path=screenshot, full_page=True)


def test_burst_reports_its_rates_and_no_loss(server, page):
    connect(page, server.http_url)
    expect(page.locator("#burst-count")).to_have_value("1000")
    expect(page.locator("#burst-size")).to_have_value("32")
    page.click("#burst")
    result = page.locator("#burst-result")
    expect(result).to_have_text(
        re.compile(
            r"^Burst of 1,000 \u00d7 32 B: sent at [\d,]+ msg/s, \d+\.\d\d MB/s; "
            r"echoed at [\d,]+ msg/s, \d+\.\d\d MB/s; 0 lost, 0 out of order$"
        ),
        timeout=15000,
    )
    expect(rows(page, "event").last).to_have_text(re.compile("Burst of 1,000"))
    expect(rows(page, "received")).to_have_count(0)
    expect(page.locator("#burst")).to_be_enabled()


def test_reconnects_after_the_server_restarts(page):
    with ServerProcess(GUNICORN) as first:
        connect(page, first.http_url)
        page.check("#reconnect")
    # The server stopped (1001): the page retries, 1 s and then 2 s later, until it is back.
    expect(rows(page, "event").filter(has_text="Code: 1001")).to_have_count(1)
    expect(rows(page, "event").filter(has_text="Reconnecting in 1.0 s")).to_have_count(1)
    with ServerProcess(GUNICORN, port=first.port):
        expect(page.locator("#state")).to_have_text("Open", timeout=15000)
        expect(rows(page, "event").last).to_contain_text("Connection opened")
        send(page, "back")
        expect(rows(page, "received").last).to_contain_text("back")


def test_no_reconnect_after_close_socket_or_when_off(server, page):
    connect(page, server.http_url)
    page.check("#reconnect")
    page.click("#close")
    expect(page.locator("#state")).to_have_text("Closed")
    expect(rows(page, "event").filter(has_text="Reconnecting")).to_have_count(0)


def test_chart_fits_a_phone_in_dark_mode(server, browser):
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, is_mobile=True, color_scheme="dark"
    )
    page = context.new_page()
    connect(page, server.http_url)
    page.check("#probe")
    chart = page.get_by_role("img", name="Round-trip time")
    expect(chart.locator("circle.probe")).to_have_count(2, timeout=4000)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    box = chart.bounding_box()
    assert box is not None and box["width"] <= 360 and box["height"] >= 150
    # Labels are drawn in the text colour, which dark mode makes light.
    colour = chart.locator("text").first.evaluate("e => getComputedStyle(e).fill")
    assert colour != "rgb(0, 0, 0)", colour
    context.close()


def test_test_mode_fields_write_the_query_and_the_server_follows_it(server, page):
    page.goto(server.http_url)
    page.click("#test-mode summary")
    base = f"ws://127.0.0.1:{server.port}/ws"
    fields = {
        "#delay": "20", "#close_after": "2", "#close_in": "30", "#code": "4001",
        "#reason": "bye now", "#drop_in": "60", "#stream": "3", "#size": "10", "#rate": "100",
    }  # fmt: skip
    for selector, value in fields.items():
        page.fill(selector, value)
    page.select_option("#type", "binary")
    expect(page.locator("#url")).to_have_value(
        f"{base}?hello&delay=20&close_after=2&close_in=30&code=4001&reason=bye+now"
        "&drop_in=60&stream=3&size=10&rate=100&type=binary"
    )
    for selector in fields:
        page.fill(selector, "")
    page.select_option("#type", "")
    page.uncheck("#hello")
    expect(page.locator("#url")).to_have_value(base)

    page.fill("#close_after", "2")
    page.fill("#code", "4001")
    page.fill("#reason", "bye now")
    page.fill("#stream", "3")
    page.fill("#size", "10")
    page.click("#connect")
    expect(page.locator("#state")).to_have_text("Open")
    expect(page.locator("#delay")).to_be_disabled()  # the URL is what this connection asked for
    expect(rows(page, "received")).to_have_count(3)
    expect(rows(page, "received").first.locator("td").last).to_have_text("1 ........")
    send(page, "one")
    send(page, "two")
    expect(page.locator("#state")).to_have_text("Closed")
    expect(rows(page, "event").last).to_contain_text("Code: 4001. Reason: bye now")


def test_what_the_server_saw_is_a_table_of_text_and_names_who_served(server, page):
    page.goto(f"{server.http_url}")
    page.fill("#url", f"ws://127.0.0.1:{server.port}/ws?hello&x={XSS}")
    page.click("#connect")
    expect(page.locator("#state")).to_have_text("Open")
    served_by = page.locator("#served-by")
    expect(served_by).to_have_text(re.compile(rf"^[\w.-]+/{server.worker_pid()}$"))
    table = page.locator("#hello-table")
    request_line = table.locator("tr", has_text="Request line").locator("td").last
    expect(request_line).to_have_text(re.compile(r"^GET /ws\?hello&x=.*img.* HTTP/1\.1$"))
    expect(table.locator("tr", has_text="Ignored parameters").locator("td").last).to_have_text("x")
    expect(table.locator("tr.header", has_text="User-Agent")).to_have_count(1)
    expect(table.locator("tr", has_text="Served by").locator("td").last).to_have_text(
        served_by.inner_text()
    )
    assert table.locator("img").count() == 0 and page.dialogs == []
    send(page, "after the description")
    expect(rows(page, "received")).to_have_count(1)  # the description is not an echo
    expect(rows(page, "received").last).to_contain_text("after the description")


def test_without_hello_nothing_is_described_and_who_served_is_unknown(server, page):
    page.goto(server.http_url)
    page.click("#test-mode summary")
    page.uncheck("#hello")
    page.click("#connect")
    expect(page.locator("#state")).to_have_text("Open")
    send(page, "first")
    expect(rows(page, "received").last).to_contain_text("first")
    expect(page.locator("#served-by")).to_have_text("\u2013")  # a dash: unknown
    expect(page.locator("#hello-section")).to_be_hidden()


def test_a_test_mode_out_of_bounds_is_refused_and_said(server, page):
    page.goto(server.http_url)
    page.click("#test-mode summary")
    page.fill("#delay", "30001")
    page.click("#connect")
    expect(page.locator("#state")).to_have_text("Closed")
    expect(rows(page, "error").last).to_contain_text("failed")
    expect(rows(page, "event").last).to_contain_text("Code: 1006")

// The echo console: connect to any WebSocket URL and log exactly what happened.
// Everything shown is inserted with textContent, never parsed as HTML.
import { Burst } from "./burst.js";
import { RttChart } from "./chart.js";
import { showHello } from "./hello.js";
import { Probe } from "./probe.js";
import { TEST_MODE_FIELDS, asksForHello, withTestModes } from "./testmode.js";

const $ = (id) => document.getElementById(id);
const STATES = ["Connecting", "Open", "Closing", "Closed"];
const HEX_PREVIEW_BYTES = 64;
const RECONNECT_FIRST_MS = 1000;
const RECONNECT_MAX_MS = 30000;
const encoder = new TextEncoder();

let socket = null;
let pending = []; // sent messages awaiting their echo: {data, sentAt}
let openedAt = null; // performance.now() when the connection opened
let uptimeTimer = null;
let closingOnPurpose = false; // Close Socket was pressed: no reconnecting
let reconnectTimer = null;
let reconnectDelay = RECONNECT_FIRST_MS;
let helloDue = false; // the server sends what it saw first: the next message is it

const chart = new RttChart($("rtt-chart"));
const probe = new Probe((text) => socket.send(text), (rtt) => {
  chart.add("probe", rtt);
  $("probe-summary").textContent = probe.describe();
});
const burst = new Burst();

// ws(s)://<this page's host and path prefix>/ws, so it also works behind a proxy.
const endpoint = new URL($("url").dataset.endpoint, document.baseURI);
endpoint.protocol = location.protocol === "https:" ? "wss:" : "ws:";
$("url").value = endpoint.href;
const testModeFields = document.querySelectorAll(TEST_MODE_FIELDS);

function applyTestModes() {
  try {
    $("url").value = withTestModes($("url").value, testModeFields);
  } catch (error) {
    logError(`${$("url").value} is not a URL: ${error.message}`);
  }
}

function showState() {
  const state = socket ? socket.readyState : null;
  $("state").textContent = state === null ? "Ready to connect..." : STATES[state] ?? `Unknown (${state})`;
  const open = state === WebSocket.OPEN;
  for (const id of ["message", "kind", "send", "file", "send-file", "close-code", "close-reason", "close"]) {
    $(id).disabled = !open;
  }
  for (const id of ["burst-count", "burst-size", "burst"]) $(id).disabled = !open || burst.running;
  const idle = state === null || state === WebSocket.CLOSED;
  $("url").disabled = $("protocols").disabled = $("connect").disabled = !idle;
  for (const field of testModeFields) field.disabled = !idle;
}

function log(kind, { from = "", to = "", type = "", size = "", rtt = "", data = "" }) {
  const row = $("log").insertRow();
  row.className = kind;
  const time = new Date().toLocaleTimeString([], { hour12: false }) + `.${String(Date.now() % 1000).padStart(3, "0")}`;
  for (const text of [time, from, to, type, size === "" ? "" : `${size} B`, rtt, data]) {
    row.insertCell().textContent = text;
  }
  row.scrollIntoView({ block: "nearest" });
}

const logEvent = (data) => log("event", { data });
const logError = (data) => log("error", { data: `Error: ${data}` });

function describe(data) {
  if (typeof data === "string") return { type: "text", size: encoder.encode(data).length, data };
  const bytes = new Uint8Array(data);
  const hex = Array.from(bytes.subarray(0, HEX_PREVIEW_BYTES), (b) => b.toString(16).padStart(2, "0")).join(" ");
  return { type: "binary", size: bytes.length, data: bytes.length > HEX_PREVIEW_BYTES ? `${hex} …` : hex };
}

function sameData(a, b) {
  if (typeof a === "string" || typeof b === "string") return a === b;
  const x = new Uint8Array(a), y = new Uint8Array(b);
  return x.length === y.length && x.every((value, i) => value === y[i]);
}

// Round-trip time: the received message matches the oldest pending send with the same content.
function roundTrip(data) {
  const index = pending.findIndex((sent) => sameData(sent.data, data));
  if (index < 0) return "";
  const [sent] = pending.splice(index, 1);
  const rtt = performance.now() - sent.sentAt;
  chart.add("message", rtt);
  return `${rtt.toFixed(1)} ms`;
}

function send(data) {
  try {
    socket.send(data);
  } catch (error) {
    logError(error.message);
    return;
  }
  pending.push({ data, sentAt: performance.now() });
  log("sent", { from: "Client", to: "Server", ...describe(data) });
}

function parseHex(text) {
  const digits = text.replace(/0x|[\s,:]/gi, "");
  if (digits.length % 2 || /[^0-9a-f]/i.test(digits)) throw new Error(`"${text}" is not hex bytes, e.g. 01 02 ff`);
  return Uint8Array.from(digits.match(/../g) ?? [], (pair) => parseInt(pair, 16)).buffer;
}

const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

function showUptime() {
  $("uptime").textContent = seconds(performance.now() - openedAt);
}

function opened() {
  openedAt = performance.now();
  showUptime();
  uptimeTimer = setInterval(showUptime, 100);
  reconnectDelay = RECONNECT_FIRST_MS;
  chart.nextConnection();
  if ($("probe").checked) probe.start();
}

// The final duration stays next to the close code and reason until the next connection.
function closed(event) {
  clearInterval(uptimeTimer);
  probe.connectionLost();
  $("probe-summary").textContent = probe.describe();
  const reason = event.reason ? ` "${event.reason}"` : "";
  if (openedAt === null) {
    $("uptime").textContent = `never opened, closed ${event.code}${reason}`;
    return "";
  }
  const lasted = seconds(performance.now() - openedAt);
  openedAt = null;
  $("uptime").textContent = `${lasted}, closed ${event.code}${reason}`;
  return ` (open for ${lasted})`;
}

function scheduleReconnect() {
  const delay = reconnectDelay;
  reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
  logEvent(`Reconnecting in ${seconds(delay)}`);
  reconnectTimer = setTimeout(() => {
    reconnectTimer = null;
    logEvent(`Reconnecting to ${$("url").value}`);
    connect();
  }, delay);
}

function cancelReconnect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
}

// The first message of a ?hello connection: shown as a table ("What the server saw"),
// not logged as an echo.
function receivedHello(data) {
  let hello;
  try {
    hello = JSON.parse(data);
  } catch {
    return false;
  }
  $("served-by").textContent = showHello($("hello-table"), hello);
  $("hello-section").hidden = false;
  return true;
}

function connect() {
  cancelReconnect();
  pending = [];
  closingOnPurpose = false;
  try {
    // Subprotocols to offer, in order; the constructor rejects any that is not a token.
    const protocols = $("protocols").value.split(",").map((p) => p.trim()).filter(Boolean);
    socket = new WebSocket($("url").value, protocols);
  } catch (error) {
    socket = null;
    logError(error.message);
    showState();
    return;
  }
  socket.binaryType = "arraybuffer";
  helloDue = asksForHello(socket.url);
  $("served-by").textContent = "–";
  socket.onopen = () => {
    opened();
    showState();
    // What the server's 101 agreed to: a subprotocol and extensions (permessage-deflate).
    logEvent(`Connection opened. Subprotocol: ${socket.protocol || "none"}. Extensions: ${socket.extensions || "none"}`);
    $("message").focus();
  };
  socket.onmessage = (e) => {
    if (helloDue) {
      helloDue = false;
      if (receivedHello(e.data)) return;
    }
    if (probe.claims(e.data) || burst.claims(e.data)) return;
    log("received", { from: "Server", to: "Client", rtt: roundTrip(e.data), ...describe(e.data) });
  };
  socket.onerror = () => logError("the WebSocket connection failed or was interrupted");
  socket.onclose = (e) => {
    const lasted = closed(e);
    showState();
    logEvent(`Connection closed. Code: ${e.code}. Reason: ${e.reason}${lasted}`);
    if ($("reconnect").checked && !closingOnPurpose) {
      scheduleReconnect();
    } else {
      $("connect").focus();
    }
  };
  showState();
}

$("connect-form").addEventListener("submit", (event) => {
  event.preventDefault();
  connect();
});

$("reconnect").addEventListener("change", () => {
  if (!$("reconnect").checked) cancelReconnect();
});

$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("message").value;
  if ($("kind").value === "text") {
    send(text);
    return;
  }
  try {
    send(parseHex(text));
  } catch (error) {
    logError(error.message);
  }
});

$("file-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const [file] = $("file").files;
  if (!file) {
    logError("choose a file first");
    return;
  }
  send(await file.arrayBuffer());
});

$("close-form").addEventListener("submit", (event) => {
  event.preventDefault();
  try {
    socket.close(Number($("close-code").value), $("close-reason").value);
  } catch (error) {
    logError(error.message);
    return;
  }
  closingOnPurpose = true;
  showState();
});

$("probe").addEventListener("change", () => {
  if (!$("probe").checked) {
    probe.stop();
  } else if (socket?.readyState === WebSocket.OPEN) {
    probe.start();
  }
});

$("burst-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const count = Number($("burst-count").value), size = Number($("burst-size").value);
  if (!(count >= 1 && size >= 1)) {
    logError("a burst needs a count and a size of at least 1");
    return;
  }
  $("burst-result").textContent = `Sending ${count.toLocaleString("en")} messages…`;
  const running = burst.send(socket, count, size);
  showState();
  const result = await running;
  $("burst-result").textContent = result;
  logEvent(result);
  showState();
});

$("clear").addEventListener("click", () => $("log").replaceChildren());

for (const field of testModeFields) field.addEventListener("input", applyTestModes);
applyTestModes();

chart.draw();
showState();

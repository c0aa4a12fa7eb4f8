// A minimal console for the echo endpoint; every text is inserted with textContent.
"use strict";
const $ = (id) => document.getElementById(id);
const url = $("url");
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
url.value = `${scheme}//${location.host}${url.dataset.path}`;
let socket = null;

function log(from, to, data) {
  const row = $("log").insertRow();
  for (const text of [from, to, data]) row.insertCell().textContent = text;
}

function setOpen(open) {
  $("message").disabled = $("send").disabled = $("close").disabled = !open;
  url.disabled = $("connect").disabled = open;
}

$("connect-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("state").textContent = "Connecting";
  socket = new WebSocket(url.value);
  socket.onopen = () => { $("state").textContent = "Open"; setOpen(true); log("", "", "Connection opened"); };
  socket.onmessage = (e) => log("Server", "Client", String(e.data));
  socket.onerror = () => log("", "", "Error: the connection failed");
  socket.onclose = (e) => {
    $("state").textContent = "Closed";
    setOpen(false);
    log("", "", `Connection closed. Code: ${e.code}. Reason: ${e.reason}`);
  };
});

$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  socket.send($("message").value);
  log("Client", "Server", $("message").value);
});

$("close").addEventListener("click", () => {
  $("state").textContent = "Closing";
  socket.close(1000, "Closing from client");
});

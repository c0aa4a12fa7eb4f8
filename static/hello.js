// What the server saw (/ws?hello): its description shown as a table of text.
// Every value is inserted with textContent: nothing from the server is parsed as HTML.

function row(body, name, value, kind = "") {
  const tr = body.insertRow();
  tr.className = kind;
  tr.insertCell().textContent = name;
  tr.insertCell().textContent = value;
}

const text = (value) => (value === null || value === undefined || value === "" ? "none" : String(value));
const pairs = (object) => Object.entries(object).map(([name, value]) => `${name}=${value}`).join(" ") || "none";

// Fills `body` from the description; returns the served-by identity.
export function showHello(body, hello) {
  body.replaceChildren();
  row(body, "Request line", text(hello.request_line));
  row(body, "Connected from", text(hello.peer));
  row(body, "Client (trusted)", text(hello.client));
  row(body, "TLS", hello.tls ? `${hello.tls.version} ${hello.tls.cipher}` : "none");
  row(body, "Subprotocol", text(hello.subprotocol));
  row(body, "Extensions", text(hello.extensions));
  row(body, "Served by", text(hello.served_by));
  row(body, "Test modes", pairs(hello.test_modes ?? {}));
  row(body, "Ignored parameters", (hello.ignored_parameters ?? []).join(", ") || "none");
  row(body, "Server settings", pairs(hello.settings ?? {}));
  for (const [name, value] of hello.headers ?? []) row(body, name, value, "header");
  return text(hello.served_by);
}

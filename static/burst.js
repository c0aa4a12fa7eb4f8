// "Send burst": count messages of size bytes, as fast as the socket takes them;
// when the last echo is back, the rate each way, and any loss or reordering.

const HIGH_WATER = 1 << 20; // bytes queued in the browser before sending waits
const QUIET_MS = 5000; // no echo for this long: the rest are lost

const pause = () => new Promise((resolve) => setTimeout(resolve, 0));

export class Burst {
  constructor() {
    // Marked apart from anything typed, and from the probes.
    this.prefix = `\u0001burst ${Math.random().toString(36).slice(2, 10)} `;
    this.run = null;
  }

  get running() {
    return this.run !== null;
  }

  // Resolves with a description of the result.
  async send(socket, count, size) {
    const run = { count, received: 0, outOfOrder: 0, next: 1, lastEcho: 0 };
    this.run = run;
    let bytes = 0;
    const started = performance.now();
    for (let sequence = 1; sequence <= count; sequence += 1) {
      while (socket.bufferedAmount > HIGH_WATER) await pause();
      if (socket.readyState !== WebSocket.OPEN) break;
      const tag = `${this.prefix}${sequence} `;
      const message = tag.length >= size ? tag : tag + ".".repeat(size - tag.length);
      bytes += message.length;
      socket.send(message);
    }
    while (socket.bufferedAmount > 0 && socket.readyState === WebSocket.OPEN) await pause();
    const sent = performance.now();
    await new Promise((resolve) => {
      run.done = resolve;
      run.watch = setInterval(() => {
        if (socket.readyState !== WebSocket.OPEN || performance.now() - (run.lastEcho || sent) > QUIET_MS) resolve();
      }, 100);
      if (run.received === count) resolve();
    });
    clearInterval(run.watch);
    this.run = null;
    return describe(run, bytes / count, sent - started, (run.lastEcho || sent) - started);
  }

  // True if data is one of this burst's echoes (counted, not to be logged).
  claims(data) {
    if (typeof data !== "string" || !data.startsWith(this.prefix)) return false;
    const run = this.run;
    if (run === null) return true; // a late echo of a burst already reported
    const sequence = parseInt(data.slice(this.prefix.length), 10);
    if (sequence !== run.next) run.outOfOrder += 1;
    run.next = sequence + 1;
    run.received += 1;
    run.lastEcho = performance.now();
    if (run.received === run.count && run.done) run.done();
    return true;
  }
}

function describe(run, size, sendMs, echoMs) {
  const rate = (ms) => {
    const perSecond = (run.count / ms) * 1000;
    return `${Math.round(perSecond).toLocaleString("en")} msg/s, ${((perSecond * size) / 1e6).toFixed(2)} MB/s`;
  };
  const lost = run.count - run.received;
  const flags = lost || run.outOfOrder ? "⚠ " : "";
  return (
    `${flags}Burst of ${run.count.toLocaleString("en")} × ${Math.round(size)} B: ` +
    `sent at ${rate(sendMs)}; echoed at ${rate(echoMs)}; ` +
    `${lost} lost, ${run.outOfOrder} out of order`
  );
}

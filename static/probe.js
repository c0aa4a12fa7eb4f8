// "Probe every second": a small marked text message each second, matched to its
// echo by sequence number; never logged, summarised instead.
import { summary } from "./stats.js";

const INTERVAL_MS = 1000;
const LOST_AFTER_MS = 5000;

export class Probe {
  // send(text) sends on the open connection; onSample(rtt) is called for each echo.
  constructor(send, onSample) {
    this.send = send;
    this.onSample = onSample;
    // A control character and a per-page token mark probes apart from anything typed.
    this.prefix = `\u0001probe ${Math.random().toString(36).slice(2, 10)} `;
    this.sequence = 0;
    this.pending = new Map(); // sequence -> sentAt
    this.rtts = [];
    this.lost = 0;
    this.timer = null;
  }

  start() {
    if (this.timer !== null) return;
    this.tick();
    this.timer = setInterval(() => this.tick(), INTERVAL_MS);
  }

  // Unchecked: probes already sent are still matched if their echoes come.
  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  // The connection closed: no echo can come any more, so what is pending is lost.
  connectionLost() {
    this.stop();
    this.lost += this.pending.size;
    this.pending.clear();
  }

  tick() {
    const now = performance.now();
    for (const [sequence, sentAt] of this.pending) {
      if (now - sentAt > LOST_AFTER_MS) {
        this.pending.delete(sequence);
        this.lost += 1;
      }
    }
    this.sequence += 1;
    this.pending.set(this.sequence, now);
    this.send(this.prefix + this.sequence);
  }

  // True if data is a probe's echo (recorded, not to be logged).
  claims(data) {
    if (typeof data !== "string" || !data.startsWith(this.prefix)) return false;
    const sequence = Number(data.slice(this.prefix.length));
    const sentAt = this.pending.get(sequence);
    if (sentAt !== undefined) {
      this.pending.delete(sequence);
      const rtt = performance.now() - sentAt;
      this.rtts.push(rtt);
      this.onSample(rtt);
    }
    return true;
  }

  describe() {
    const count = this.rtts.length;
    if (!count && !this.lost) return "No probes yet";
    const rtt = count ? `; RTT ${summary(this.rtts)}` : "";
    return `${count} probe${count === 1 ? "" : "s"} echoed, ${this.lost} lost${rtt}`;
  }
}

// The "Round-trip time" chart: every probe's and message's RTT over time, in plain SVG.
// Each connection is its own line, so the time it was down is a gap.

const NS = "http://www.w3.org/2000/svg";
const HEIGHT = 180;
const PAD = { left: 52, right: 10, top: 12, bottom: 24 };
const KEEP = 3600; // samples: an hour of probes

export class RttChart {
  constructor(svg) {
    this.svg = svg;
    this.samples = []; // {kind: "probe" | "message", rtt, at, connection}
    this.connection = 0;
    new ResizeObserver(() => this.draw()).observe(svg);
  }

  // A new connection: its samples are not joined to the last one's.
  nextConnection() {
    this.connection += 1;
  }

  add(kind, rtt) {
    this.samples.push({ kind, rtt, at: performance.now(), connection: this.connection });
    if (this.samples.length > KEEP) this.samples.shift();
    this.draw();
  }

  draw() {
    // Drawn in the SVG's own pixels, so that dots stay round on any screen width.
    const width = Math.max(this.svg.clientWidth, PAD.left + PAD.right + 10);
    this.svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    this.svg.replaceChildren();
    const plot = { x: PAD.left, y: PAD.top, w: width - PAD.left - PAD.right, h: HEIGHT - PAD.top - PAD.bottom };
    this.element("rect", { class: "frame", x: plot.x, y: plot.y, width: plot.w, height: plot.h });
    if (!this.samples.length) {
      this.text("No round trips yet", plot.x + plot.w / 2, plot.y + plot.h / 2, "middle");
      return;
    }
    const start = this.samples[0].at;
    const span = Math.max(this.samples.at(-1).at - start, 1000);
    const top = niceCeiling(Math.max(...this.samples.map((s) => s.rtt)) * 1.1);
    const x = (sample) => plot.x + ((sample.at - start) / span) * plot.w;
    const y = (sample) => plot.y + plot.h - (sample.rtt / top) * plot.h;
    this.text(`${top} ms`, plot.x - 6, plot.y + 4, "end");
    this.text("0", plot.x - 6, plot.y + plot.h, "end");
    this.text(`${(span / 1000).toFixed(0)} s`, plot.x + plot.w, HEIGHT - 6, "end");
    this.text("time", plot.x, HEIGHT - 6, "start");
    const lines = new Map();
    for (const sample of this.samples) {
      if (sample.kind !== "probe") continue;
      const points = lines.get(sample.connection) ?? [];
      points.push(`${x(sample).toFixed(1)},${y(sample).toFixed(1)}`);
      lines.set(sample.connection, points);
    }
    for (const points of lines.values()) this.element("polyline", { class: "line", points: points.join(" ") });
    for (const sample of this.samples) {
      this.element("circle", { class: sample.kind, cx: x(sample).toFixed(1), cy: y(sample).toFixed(1), r: 2.5 });
    }
  }

  element(name, attributes) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    this.svg.append(node);
    return node;
  }

  text(content, x, y, anchor) {
    this.element("text", { x, y, "text-anchor": anchor }).textContent = content;
  }
}

// 1, 2 or 5 times a power of ten, at least value (and at least 1 ms).
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(Math.max(value, 1)));
  return [1, 2, 5, 10].map((step) => step * power).find((tick) => tick >= value) ?? 10 * power;
}

// Time-series charts drawn with uPlot (vendored, global `uPlot`). Everything a chart shows is
// on its canvas; the DOM around it depends only on the chart's size, never on the data:
// fixed axis sizes, no legend (the page has its own), no cursor.

const HEIGHT = 150;
const COLORS = { blue: "#1f5fbf", orange: "#b35900", purple: "#6a3fb5", green: "#1a7f37" };

// Tick labels kept short (1.5k, 2M) so they fit the fixed axis width.
function compact(value) {
  const size = Math.abs(value);
  if (size >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (size >= 1e4) return `${+(value / 1e3).toFixed(0)}k`;
  if (size >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  return `${+value.toFixed(2)}`;
}

function axis(scale, label, side = 3, stroke = "#333") {
  return {
    scale,
    label,
    side,
    size: 56,
    values: (_u, splits) => splits.map(compact),
    labelSize: 18,
    stroke,
    grid: { stroke: "#e4e7eb" },
    ticks: { stroke: "#c9ced6" },
  };
}

// "20:15" (or "20:15:30" when ticks are seconds apart), in UTC like every time on the page.
function clockTicks(_u, splits, _axis, _space, increment) {
  const pad = (n) => String(n).padStart(2, "0");
  return splits.map((seconds) => {
    const d = new Date(seconds * 1000);
    const minutes = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    return increment < 60 ? `${minutes}:${pad(d.getUTCSeconds())}` : minutes;
  });
}

function timeAxis() {
  return {
    size: 32,
    values: clockTicks,
    stroke: "#333",
    grid: { stroke: "#e4e7eb" },
    ticks: { stroke: "#c9ced6" },
  };
}

const SPECS = {
  throughput: {
    series: [
      { label: "ledgers/s", stroke: COLORS.blue, width: 2, scale: "ledgers" },
      { label: "events/s", stroke: COLORS.orange, width: 2, scale: "events" },
    ],
    axes: [
      timeAxis(),
      axis("ledgers", "ledgers/s", 3, COLORS.blue),
      { ...axis("events", "events/s", 1, COLORS.orange), grid: { show: false } },
    ],
    scales: {
      ledgers: { range: (_u, _min, max) => [0, Math.max(1, max)] },
      events: { range: (_u, _min, max) => [0, Math.max(1, max)] },
    },
  },
  lag: {
    series: [
      {
        label: "lag (ledgers)",
        stroke: COLORS.purple,
        width: 2,
        fill: "rgba(106,63,181,0.08)",
        scale: "lag",
      },
    ],
    axes: [timeAxis(), axis("lag", "ledgers")],
    scales: { lag: { range: (_u, _min, max) => [0, Math.max(5, max)] } },
  },
  process: {
    series: [
      { label: "CPU %", stroke: COLORS.green, width: 2, scale: "cpu" },
      { label: "memory MiB", stroke: COLORS.blue, width: 2, scale: "mib" },
    ],
    axes: [
      timeAxis(),
      axis("cpu", "CPU %", 3, COLORS.green),
      { ...axis("mib", "MiB", 1, COLORS.blue), grid: { show: false } },
    ],
    scales: {
      cpu: { range: (_u, _min, max) => [0, Math.max(10, max)] },
      mib: { range: (_u, min, max) => [0, Math.max(64, max * 1.1, min)] },
    },
  },
};

export class Charts {
  constructor(containers) {
    this.containers = containers;
    this.plots = {};
    this.observer = new ResizeObserver(() => this.resize());
    for (const element of Object.values(containers)) this.observer.observe(element);
  }

  update(series) {
    for (const [name, data] of Object.entries(series)) {
      const plot = this.plots[name];
      if (plot) plot.setData(data);
      else this.plots[name] = this.create(name, data);
    }
  }

  create(name, data) {
    const spec = SPECS[name];
    const container = this.containers[name];
    const options = {
      width: Math.max(200, container.clientWidth),
      height: HEIGHT,
      // Times on the axis in UTC, like every other time on the page.
      tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"),
      legend: { show: false },
      cursor: { show: false },
      series: [{}, ...spec.series],
      axes: spec.axes,
      scales: { x: { time: true }, ...spec.scales },
    };
    return new uPlot(options, data, container);
  }

  resize() {
    for (const [name, plot] of Object.entries(this.plots)) {
      const width = Math.max(200, this.containers[name].clientWidth);
      if (width !== plot.width) plot.setSize({ width, height: HEIGHT });
    }
  }
}

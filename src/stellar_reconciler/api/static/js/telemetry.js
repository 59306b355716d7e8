// Telemetry samples (GET /api/telemetry, and the newest one in every snapshot) turned into
// chart series and headline rates. Pure: samples in, numbers out.

export const WINDOW_SECONDS = 15 * 60;

// Samples merged by time, oldest first, none older than the window before the newest.
export function mergeSamples(known, incoming) {
  const byTime = new Map(known.map((s) => [s.t, s]));
  for (const sample of incoming) byTime.set(sample.t, sample);
  const merged = [...byTime.values()].sort((a, b) => a.t - b.t);
  if (!merged.length) return merged;
  const since = merged[merged.length - 1].t - WINDOW_SECONDS;
  return merged.filter((s) => s.t >= since);
}

// Change per second of a counter between consecutive samples; null where it cannot be told
// (the first sample, a counter that went back).
function rates(samples, field, scale = 1) {
  return samples.map((sample, i) => {
    if (i === 0) return null;
    const before = samples[i - 1];
    const seconds = sample.t - before.t;
    const delta = sample[field] - before[field];
    return seconds > 0 && delta >= 0 ? (delta / seconds) * scale : null;
  });
}

// Columns in uPlot's layout: [times, series...].
export function chartSeries(samples) {
  const times = samples.map((s) => s.t);
  return {
    throughput: [times, rates(samples, "ledgers_total"), rates(samples, "events_total")],
    lag: [times, samples.map((s) => s.lag)],
    process: [
      times,
      rates(samples, "cpu_seconds", 100),
      samples.map((s) => (s.rss_bytes ? s.rss_bytes / 2 ** 20 : null)),
    ],
  };
}

// Average rates over the window: {ledgersPerSecond, eventsPerSecond, cpuPercent}, null
// fields until two samples exist.
export function windowRates(samples) {
  const none = { ledgersPerSecond: null, eventsPerSecond: null, cpuPercent: null };
  if (samples.length < 2) return none;
  const first = samples[0];
  const last = samples[samples.length - 1];
  const seconds = last.t - first.t;
  if (seconds <= 0) return none;
  const previous = samples[samples.length - 2];
  const recent = last.t - previous.t;
  return {
    ledgersPerSecond: (last.ledgers_total - first.ledgers_total) / seconds,
    eventsPerSecond: (last.events_total - first.events_total) / seconds,
    // CPU over the last interval: what the process does now, not its 15-minute mean.
    cpuPercent: recent > 0 ? ((last.cpu_seconds - previous.cpu_seconds) / recent) * 100 : null,
  };
}

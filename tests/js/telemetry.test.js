// telemetry.js: samples merged into the 15-minute window, chart series and headline rates.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  WINDOW_SECONDS,
  chartSeries,
  mergeSamples,
  windowRates,
} from "../../src/stellar_reconciler/api/static/js/telemetry.js";

const sample = (t, ledgers, events, cpu = 0, rss = 0, lag = 0) => ({
  t,
  ledgers_total: ledgers,
  events_total: events,
  cpu_seconds: cpu,
  rss_bytes: rss,
  lag,
});

test("merging keeps one sample per time, in order, within the window", () => {
  const known = [sample(10, 1, 1), sample(20, 2, 2)];
  const incoming = [sample(20, 9, 9), sample(15, 3, 3), sample(10 + WINDOW_SECONDS + 5, 4, 4)];
  const merged = mergeSamples(known, incoming);
  assert.deepEqual(
    merged.map((s) => s.t),
    [15, 20, 10 + WINDOW_SECONDS + 5],
  );
  assert.equal(merged[1].ledgers_total, 9, "the newer copy of a sample wins");
  assert.deepEqual(mergeSamples([], []), []);
});

test("chart series are rates per second, null where a counter went back", () => {
  const samples = [
    sample(0, 0, 0, 0, 2 ** 20, 5),
    sample(2, 10, 100, 1, 2 * 2 ** 20, 3),
    sample(4, 4, 120, 1.5, 0, 1),
  ];
  const series = chartSeries(samples);
  assert.deepEqual(series.throughput, [
    [0, 2, 4],
    [null, 5, null],
    [null, 50, 10],
  ]);
  assert.deepEqual(series.lag, [
    [0, 2, 4],
    [5, 3, 1],
  ]);
  assert.deepEqual(series.process, [
    [0, 2, 4],
    [null, 50, 25],
    [1, 2, null],
  ]);
});

test("window rates average the whole window; CPU is the last interval's", () => {
  assert.deepEqual(windowRates([sample(0, 0, 0)]), {
    ledgersPerSecond: null,
    eventsPerSecond: null,
    cpuPercent: null,
  });
  const rates = windowRates([sample(0, 0, 0, 0), sample(10, 50, 500, 1), sample(20, 100, 1000, 6)]);
  assert.deepEqual(rates, { ledgersPerSecond: 5, eventsPerSecond: 50, cpuPercent: 50 });
});

// format.js: the dashboard's pure formatting, checked in Node (no browser, no locale).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  NONE,
  catchUpText,
  discrepancyExplainPath,
  eventKeyFields,
  formatAmount,
  formatBytes,
  formatCount,
  formatDuration,
  formatPercent,
  formatUtc,
  formatUtcSeconds,
  groupDigits,
  jobProgressText,
  planRescan,
  recordExplainPath,
  roleText,
  shorten,
} from "../../src/stellar_reconciler/api/static/js/format.js";

test("digits are grouped as text, so i128 amounts keep every digit", () => {
  assert.equal(groupDigits("1234567"), "1,234,567");
  assert.equal(groupDigits("-1234567.0500"), "-1,234,567.0500");
  assert.equal(
    formatAmount("170141183460469231731687303715884105727"),
    "170,141,183,460,469,231,731,687,303,715,884,105,727",
  );
  assert.equal(groupDigits("not a number"), "not a number");
});

test("counts round floats and show a dash for nothing", () => {
  assert.equal(formatCount(1234567.4), "1,234,567");
  assert.equal(formatCount("9876543"), "9,876,543");
  assert.equal(formatCount(null), NONE);
  assert.equal(formatCount(Number.NaN), NONE);
});

test("times are UTC whatever the machine's zone", () => {
  const zone = process.env.TZ;
  process.env.TZ = "Pacific/Auckland";
  try {
    assert.equal(formatUtc("2026-11-29T20:15:03.900Z"), "2026-11-29 20:15:03 UTC");
    assert.equal(formatUtcSeconds(1795983303.7), "2026-11-29 20:15:03 UTC");
  } finally {
    if (zone === undefined) delete process.env.TZ;
    else process.env.TZ = zone;
  }
  assert.equal(formatUtc(null), NONE);
  assert.equal(formatUtc("yesterday-ish"), NONE);
});

test("durations, sizes and percentages read as a person would write them", () => {
  assert.equal(formatDuration(93784), "1d 2h 3m");
  assert.equal(formatDuration(42.9), "42s");
  assert.equal(formatDuration(3600), "1h 0m");
  assert.equal(formatBytes(123456789), "117.7 MiB");
  assert.equal(formatBytes(1000), "1,000 B");
  assert.equal(formatPercent(0.98765, 2), "98.77%");
  assert.equal(shorten("CAG3X4NUFO7BABCDEFS4YW6R"), "CAG3X4…YW6R");
});

test("token events show their parties and amount; others their value's entries", () => {
  const transfer = {
    name: "transfer",
    topics: ["transfer", "GA" + "A".repeat(54), "GB" + "B".repeat(54), "USDC:G"],
    value: "170141183460469231731687303715884105727",
  };
  assert.deepEqual(
    eventKeyFields(transfer).map(([label, , kind]) => `${label}:${kind}`),
    ["from:address", "to:address", "amount:amount"],
  );
  const posted = { name: "job_posted", topics: ["job_posted"], value: { job: 7, note: "hi" } };
  assert.deepEqual(eventKeyFields(posted), [
    ["job", "7", "amount"],
    ["note", "hi", "text"],
  ]);
});

test("a rescan range is checked as the server checks it", () => {
  const status = { last_processed_ledger: 30, oldest_ledger: 5 };
  assert.deepEqual(planRescan("10", "19", status), { ok: true, first: 10, last: 19, count: 10 });
  assert.match(planRescan("10", "31", status).error, /last processed ledger \(30\)/);
  assert.match(planRescan("4", "9", status).error, /at least 5/);
  assert.match(planRescan("1.5", "9", status).error, /whole ledger number/);
  assert.match(planRescan("9", "8", status).error, /not be after/);
});

test("catch-up progress says how far, how fast and how long", () => {
  const progress = {
    done_ledgers: 1200,
    remaining_ledgers: 800,
    fraction: 0.6,
    ledgers_per_second: 150,
    events_per_second: 3000,
    eta_seconds: 5.3,
  };
  assert.equal(
    catchUpText(progress),
    "1,200 of 2,000 ledgers (60.0%) · 150.00 ledgers/s · 3,000.00 events/s · about 5s left",
  );
  const starting = {
    ...progress,
    ledgers_per_second: null,
    events_per_second: null,
    eta_seconds: null,
  };
  assert.equal(catchUpText(starting), "1,200 of 2,000 ledgers (60.0%) · measuring the rate…");
  assert.equal(catchUpText(null), NONE);
});

test("explanation links keep an external id's slashes and encode the rest", () => {
  assert.equal(
    recordExplainPath("demo/invoice/1001"),
    "api/expectations/demo/invoice/1001/explain",
  );
  assert.equal(recordExplainPath("a b?#%"), "api/expectations/a%20b%3F%23%25/explain");
  assert.equal(discrepancyExplainPath(42), "api/discrepancies/42/explain");
});

test("a job's line gives its rate and the time left, while it runs", () => {
  const running = {
    state: "running",
    done_ledgers: 1200,
    total_ledgers: 2000,
    rate_ledgers_per_sec: 150,
    eta_seconds: 5.3,
  };
  assert.equal(
    jobProgressText(running),
    "running · 1,200 of 2,000 ledgers · 150.0 ledgers/s · about 5s left",
  );
  const starting = { ...running, done_ledgers: 0, rate_ledgers_per_sec: null, eta_seconds: null };
  assert.equal(jobProgressText(starting), "running · 0 of 2,000 ledgers · measuring the rate…");
  const queued = { ...starting, state: "queued" };
  assert.equal(jobProgressText(queued), "queued · 0 of 2,000 ledgers");
  const done = { ...running, state: "done", done_ledgers: 2000, eta_seconds: 0 };
  assert.equal(jobProgressText(done), "done · 2,000 of 2,000 ledgers · 150.0 ledgers/s");
});

test("the role line names the leader a standby follows", () => {
  assert.equal(roleText("leader", "http://a:8000"), "leader: this replica indexes and writes");
  assert.equal(roleText("standby", null), "standby: no replica leads yet");
  assert.equal(
    roleText("standby", "http://10.0.0.5:8000"),
    "standby: following the leader at http://10.0.0.5:8000",
  );
});

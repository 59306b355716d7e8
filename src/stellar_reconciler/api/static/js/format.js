// Pure formatting: no DOM, no clock, no locale. The same input always gives the same text,
// which is what lets two loads of the same state render the same page.

export const NONE = "—";

// "1234567" -> "1,234,567". Works on the digits as text so integers beyond 2^53 (i128
// amounts arrive as decimal strings) keep every digit.
export function groupDigits(text) {
  const match = /^(-?)(\d+)(\.\d+)?$/.exec(String(text));
  if (!match) return String(text);
  const [, sign, whole, fraction = ""] = match;
  return sign + whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + fraction;
}

// A count: a number (rounded; Prometheus counters are floats) or a decimal string.
export function formatCount(value) {
  if (value === null || value === undefined || value === "") return NONE;
  if (typeof value === "number") {
    return Number.isFinite(value) ? groupDigits(Math.round(value).toFixed(0)) : NONE;
  }
  return groupDigits(value);
}

// An amount exactly as the API sent it (a decimal string, never through a float).
export function formatAmount(value) {
  if (value === null || value === undefined) return NONE;
  if (typeof value === "number" && !Number.isSafeInteger(value)) return String(value);
  return groupDigits(String(value));
}

const pad = (n) => String(n).padStart(2, "0");

function utcText(date) {
  if (Number.isNaN(date.getTime())) return NONE;
  const day = `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}`;
  const time = `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}`;
  return `${day} ${time} UTC`;
}

// "2026-11-29T20:15:03.5Z" -> "2026-11-29 20:15:03 UTC"
export function formatUtc(iso) {
  return iso ? utcText(new Date(iso)) : NONE;
}

export function formatUtcSeconds(seconds) {
  return seconds === null || seconds === undefined ? NONE : utcText(new Date(seconds * 1000));
}

// 93784 -> "1d 2h 3m"; under a minute -> "42s".
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return NONE;
  let rest = Math.max(0, Math.floor(seconds));
  if (rest < 60) return `${rest}s`;
  const parts = [];
  for (const [unit, size] of [
    ["d", 86400],
    ["h", 3600],
    ["m", 60],
  ]) {
    const count = Math.floor(rest / size);
    rest -= count * size;
    if (count || parts.length) parts.push(`${count}${unit}`);
  }
  return parts.join(" ");
}

// 123456789 -> "117.7 MiB"
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return NONE;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${groupDigits(value.toFixed(0))} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function formatDecimal(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(value)) return NONE;
  return groupDigits(value.toFixed(digits));
}

export function formatPercent(fraction, digits = 1) {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return NONE;
  return `${(fraction * 100).toFixed(digits)}%`;
}

// "CAG3X4NUFO7B...S4YW6R" -> "CAG3X4…YW6R": enough to tell ids apart in a table.
export function shorten(text, head = 6, tail = 4) {
  if (!text) return NONE;
  const value = String(text);
  return value.length <= head + tail + 1 ? value : `${value.slice(0, head)}…${value.slice(-tail)}`;
}

const ADDRESS = /^[GCM][A-Z2-7]{55,68}$/;

function amountOf(value) {
  if (typeof value === "string" || typeof value === "number") return value;
  if (value && typeof value === "object" && "amount" in value) return value.amount;
  return null;
}

// Where the Stellar Asset Contract (CAP-67) and its older form put the parties of an event:
// topic positions by event name and topic count.
const PARTIES = {
  transfer: { from: 1, to: 2 },
  mint: { to: (n) => (n >= 4 ? 2 : 1) },
  burn: { from: 1 },
  clawback: { from: (n) => (n >= 4 ? 2 : 1) },
  fee: { from: 1 },
};

// The fields an operator looks for in an event: [label, value, kind] with kind "address",
// "amount" or "text". Token events get from/to/amount; others show their value's entries.
export function eventKeyFields(event) {
  const topics = Array.isArray(event.topics) ? event.topics : [];
  const value = event.value;
  const fields = [];
  const parties = PARTIES[event.name];
  if (parties) {
    for (const [label, position] of Object.entries(parties)) {
      const index = typeof position === "function" ? position(topics.length) : position;
      if (typeof topics[index] === "string") fields.push([label, topics[index], "address"]);
    }
    const amount = amountOf(value);
    if (amount !== null) fields.push(["amount", amount, "amount"]);
    return fields;
  }
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, item] of Object.entries(value).slice(0, 3)) {
      fields.push([key, ...describe(item)]);
    }
    return fields;
  }
  if (value !== null && value !== undefined) fields.push(["value", ...describe(value)]);
  return fields;
}

function describe(item) {
  if (typeof item === "string" && ADDRESS.test(item)) return [item, "address"];
  if (typeof item === "string" && /^-?\d+$/.test(item)) return [item, "amount"];
  if (typeof item === "number") return [String(item), "amount"];
  return [typeof item === "string" ? item : JSON.stringify(item), "text"];
}

// A rescan range typed by an operator, checked as the server will check it (it does so
// again): {ok, first, last, count} or {ok: false, error}.
export function planRescan(fromText, toText, status) {
  const first = Number(fromText);
  const last = Number(toText);
  if (!/^\d+$/.test(String(fromText).trim()) || !Number.isSafeInteger(first) || first < 1) {
    return { ok: false, error: "From ledger must be a whole ledger number" };
  }
  if (!/^\d+$/.test(String(toText).trim()) || !Number.isSafeInteger(last) || last < 1) {
    return { ok: false, error: "To ledger must be a whole ledger number" };
  }
  if (first > last) return { ok: false, error: "From ledger must not be after to ledger" };
  const processed = status?.last_processed_ledger ?? null;
  if (processed === null) return { ok: false, error: "Nothing is processed yet" };
  if (last > processed) {
    return {
      ok: false,
      error: `To ledger must not be after the last processed ledger (${groupDigits(String(processed))})`,
    };
  }
  // The same bounds the server applies: the RPC must still keep the first ledger.
  const oldest = status?.oldest_ledger ?? null;
  if (oldest !== null && first < oldest) {
    return {
      ok: false,
      error: `From ledger must be at least ${groupDigits(String(oldest))}, the oldest the RPC keeps`,
    };
  }
  return { ok: true, first, last, count: last - first + 1 };
}

// The line beside the catch-up progress bar, from the snapshot's `catch_up`:
// "1,200 of 2,000 ledgers (60.0%) · 150.00 ledgers/s · 3,000.00 events/s · about 6s left".
export function catchUpText(progress) {
  if (!progress) return NONE;
  const total = progress.done_ledgers + progress.remaining_ledgers;
  const parts = [
    `${formatCount(progress.done_ledgers)} of ${formatCount(total)} ledgers (${formatPercent(progress.fraction)})`,
  ];
  if (progress.ledgers_per_second === null) {
    parts.push("measuring the rate…");
  } else {
    parts.push(`${formatDecimal(progress.ledgers_per_second)} ledgers/s`);
    parts.push(`${formatDecimal(progress.events_per_second)} events/s`);
  }
  if (progress.eta_seconds !== null)
    parts.push(`about ${formatDuration(progress.eta_seconds)} left`);
  return parts.join(" · ");
}

// Which replica this page is talking to (GET /api/status's role and leader): the leader
// writes; a standby serves the same pages and shows the leader's state, and says whose.
export function roleText(role, leader) {
  if (role !== "standby") return "leader: this replica indexes and writes";
  if (!leader) return "standby: no replica leads yet";
  return `standby: following the leader at ${leader}`;
}

// The line under a job's progress bar, from GET /api/jobs's fields:
// "running · 1,200 of 2,000 ledgers · 150.0 ledgers/s · about 5s left". A finished job keeps
// its average rate and has no time left; one that has done nothing yet has no rate.
export function jobProgressText(job) {
  const parts = [
    job.state,
    `${formatCount(job.done_ledgers)} of ${formatCount(job.total_ledgers)} ledgers`,
  ];
  const rate = job.rate_ledgers_per_sec;
  if (rate !== null && rate !== undefined) parts.push(`${formatDecimal(rate, 1)} ledgers/s`);
  if (job.state === "running") {
    parts.push(
      job.eta_seconds === null || job.eta_seconds === undefined
        ? "measuring the rate…"
        : `about ${formatDuration(job.eta_seconds)} left`,
    );
  }
  return parts.join(" · ");
}

// Where the evidence for a verdict is. An external id may hold "/" (the API reads the rest of
// the path as the id), so each segment is encoded on its own and the slashes stay.
export function recordExplainPath(externalId) {
  const segments = String(externalId).split("/").map(encodeURIComponent);
  return `api/expectations/${segments.join("/")}/explain`;
}

export function discrepancyExplainPath(id) {
  return `api/discrepancies/${encodeURIComponent(String(id))}/explain`;
}

// Puts a snapshot on the page. Text goes in through textContent only (event fields come from
// contracts anyone can deploy), and each render depends on the snapshot alone.

import {
  NONE,
  catchUpText,
  discrepancyExplainPath,
  eventKeyFields,
  formatAmount,
  formatBytes,
  formatCount,
  formatDecimal,
  formatDuration,
  formatPercent,
  formatUtc,
  jobProgressText,
  recordExplainPath,
  roleText,
  shorten,
} from "./format.js";
import { $, el, setText } from "./dom.js";

const STATUS_LABELS = {
  starting: "starting",
  catching_up: "catching up",
  synced: "synced",
  degraded: "degraded",
  stalled: "stalled",
};

const DEFAULT_REASONS = {
  starting: "Waiting for the first answer from the RPC.",
  catching_up: "Healthy: processing ledgers the network has already closed.",
  synced: "Healthy: following the network ledger by ledger.",
};

export function renderStatus(status) {
  const badge = $("health-badge");
  badge.dataset.status = status.status;
  setText("health-badge", STATUS_LABELS[status.status] ?? status.status);
  setText("health-reason", status.reason ?? DEFAULT_REASONS[status.status] ?? NONE);
  setText("service-name", status.service_name);
  setText("role", roleText(status.role, status.leader));
  setText("uptime", formatDuration(status.uptime_seconds));
  setText("started-at", formatUtc(status.started_at));
  setText("last-success", formatUtc(status.last_success_at));
  setText(
    "last-error",
    status.last_error ? `${status.last_error} (${formatUtc(status.last_error_at)})` : NONE,
  );
  setText("latest-ledger", formatCount(status.latest_ledger));
  setText("processed-ledger", formatCount(status.last_processed_ledger));
  setText("ledger-lag", formatCount(status.ledger_lag));
  const stored = status.stored ?? {};
  setText(
    "stored-range",
    stored.ledgers
      ? `${formatCount(stored.first_ledger)} – ${formatCount(stored.last_ledger)} (${formatCount(stored.ledgers)} ledgers)`
      : "nothing yet",
  );
  setText(
    "network",
    status.network_passphrase
      ? `“${status.network_passphrase}”, protocol ${status.protocol_version}`
      : NONE,
  );
  setText("version", `stellar-reconciler ${status.version}`);
  const worker = status.paused ? "paused" : status.worker_running ? "running" : "stopped";
  setText("worker-state", worker);
  $("pause").disabled = Boolean(status.paused);
  $("resume").disabled = !status.paused;
}

export function renderTelemetry(latest, rates) {
  setText("ledgers-rate", formatDecimal(rates.ledgersPerSecond));
  setText("events-rate", formatDecimal(rates.eventsPerSecond));
  setText("cpu-now", rates.cpuPercent === null ? NONE : `${rates.cpuPercent.toFixed(1)}%`);
  setText("rss-now", formatBytes(latest?.rss_bytes ?? null));
  setText("rpc-requests", formatCount(latest?.rpc_requests ?? null));
  setText("rpc-errors", formatCount(latest?.rpc_errors ?? null));
  setText("rpc-retries", formatCount(latest?.rpc_retries ?? null));
}

function identifier(value, head, tail) {
  return value ? el("code", { title: value }, shorten(value, head, tail)) : NONE;
}

function keyField([label, value, kind]) {
  let shown;
  if (kind === "address") shown = identifier(value, 4, 4);
  else if (kind === "amount") shown = el("span", { class: "amount" }, formatAmount(value));
  else shown = el("span", { title: value }, value.length > 20 ? `${value.slice(0, 19)}…` : value);
  return el("span", { class: "kv" }, el("span", { class: "k" }, label), " ", shown);
}

function eventRow(event) {
  const name =
    event.type === "contract" ? (event.name ?? NONE) : `${event.name ?? NONE} (${event.type})`;
  return el(
    "tr",
    {},
    el("td", { class: "num" }, formatCount(event.ledger)),
    // The column header says UTC; the cell drops the suffix to keep the table narrow.
    el("td", { class: "nowrap" }, formatUtc(event.ledger_closed_at).replace(" UTC", "")),
    el("td", {}, identifier(event.contract_id, 6, 4)),
    el("td", {}, name),
    el("td", { class: "fields" }, ...eventKeyFields(event).map(keyField)),
    el("td", {}, identifier(event.tx_hash, 6, 4)),
  );
}

let shownEvents = null;

export function renderEvents(events) {
  // Rebuild the rows only when the events changed: most snapshots are telemetry ticks.
  const key = events.map((e) => e.id).join(",");
  if (key === shownEvents) return;
  shownEvents = key;
  const rows = events.length
    ? events.map(eventRow)
    : [el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No events yet"))];
  $("events-body").replaceChildren(...rows);
}

function ledgers(first, last) {
  if (first === null || first === undefined) return null;
  return first === last || last === null
    ? `ledger ${formatCount(first)}`
    : `ledgers ${formatCount(first)}–${formatCount(last)}`;
}

// A link to the evidence behind a verdict (GET .../explain: a browser gets it as a page).
function explainLink(href, label) {
  return el("a", { href, class: "small explain", "aria-label": label }, "explain");
}

function countItem(label, href, count) {
  return el(
    "li",
    { class: count ? "nonzero" : null },
    el("a", { href }, label),
    el("span", { class: "num" }, formatCount(count)),
  );
}

export function renderDiscrepancies(summary) {
  const counts = Object.entries(summary.open_counts);
  const total = counts.reduce((sum, [, count]) => sum + count, 0);
  setText("discrepancies-total", formatCount(total));
  $("discrepancy-kinds").replaceChildren(
    ...counts.map(([kind, count]) =>
      countItem(kind, `api/discrepancies?kind=${kind}&open=true`, count),
    ),
  );
  const items = summary.newest_open.map((d) =>
    el(
      "li",
      { id: `discrepancy-${d.id}` },
      el(
        "div",
        { class: "item-head" },
        el("strong", {}, `#${d.id} ${d.kind}`),
        el(
          "span",
          { class: "muted small" },
          [ledgers(d.first_ledger, d.last_ledger), formatUtc(d.detected_at)]
            .filter(Boolean)
            .join(" · "),
        ),
        explainLink(discrepancyExplainPath(d.id), `Evidence for discrepancy ${d.id}`),
        el(
          "button",
          { type: "button", class: "small", "data-resolve": d.id, "data-kind": d.kind },
          "Resolve…",
        ),
      ),
      el("div", { class: "wrap small clamp", title: d.message }, d.message),
    ),
  );
  $("discrepancies-newest").replaceChildren(
    ...(items.length ? items : [el("li", { class: "muted" }, "None open")]),
  );
  renderResolved(summary.recently_resolved ?? []);
}

// What was found, when, and how it was put right: a repair done in the same second it was
// found would otherwise leave no trace on the page.
function renderResolved(resolved) {
  const items = resolved.map((d) =>
    el(
      "li",
      { id: `resolved-${d.id}`, "data-kind": d.kind },
      el(
        "div",
        { class: "item-head" },
        el("strong", {}, `#${d.id} ${d.kind}`),
        el("span", { class: "muted small" }, ledgers(d.first_ledger, d.last_ledger) ?? ""),
        explainLink(discrepancyExplainPath(d.id), `Evidence for discrepancy ${d.id}`),
      ),
      el("div", { class: "wrap small clamp", title: d.message }, d.message),
      el(
        "div",
        { class: "small muted" },
        `found ${formatUtc(d.detected_at)} · resolved ${formatUtc(d.resolved_at)} `,
        d.resolved_by === "auto" ? "automatically" : `by ${d.resolved_by ?? NONE}`,
      ),
      el(
        "div",
        { class: "wrap small clamp resolution", title: d.resolution ?? "" },
        d.resolution ?? NONE,
      ),
    ),
  );
  $("discrepancies-resolved").replaceChildren(
    ...(items.length ? items : [el("li", { class: "muted" }, "None yet")]),
  );
}

// Shown only while the worker works through a backlog (the snapshot's catch_up is null when
// it follows the tip).
export function renderCatchUp(progress) {
  $("catch-up").hidden = !progress;
  if (!progress) return;
  const bar = $("catch-up-bar");
  const value = String(progress.fraction);
  if (bar.getAttribute("value") !== value) bar.setAttribute("value", value);
  setText("catch-up-text", catchUpText(progress));
}

const EXPECTATION_STATUSES = [
  "pending",
  "matched",
  "amount_mismatch",
  "missing_expected",
  "failed_on_chain",
  "not_found",
  "amount_unreadable",
  "cancelled",
  "partially_matched",
];

// One expected record: its id, status and when, with the link to why.
function recordItem(record, when) {
  return el(
    "li",
    { "data-status": record.status },
    el(
      "div",
      { class: "item-head" },
      el("strong", { class: "wrap" }, record.external_id),
      el("span", { class: "muted small" }, `${record.status} · ${when}`),
      explainLink(
        recordExplainPath(record.external_id),
        `Evidence for record ${record.external_id}`,
      ),
    ),
  );
}

export function renderExpectations(summary) {
  const available = Boolean(summary);
  $("expectations-unavailable").hidden = available;
  $("expectations-detail").hidden = !available;
  $("expectations-counts").hidden = !available;
  $("match-rate-line").hidden = !available;
  if (!available) return;
  const counts = summary.expectations ?? {};
  const items = EXPECTATION_STATUSES.map((status) =>
    countItem(status, `api/expectations?status=${status}`, counts[status] ?? 0),
  );
  items.push(countItem("total", "api/expectations", counts.total ?? 0));
  items[items.length - 1].className = "total";
  $("expectations-counts").replaceChildren(...items);
  const oldest = summary.oldest_pending;
  $("expectations-oldest").replaceChildren(
    oldest
      ? recordItem(oldest, `due by ledger ${formatCount(oldest.deadline_ledger)}`)
      : el("li", { class: "muted" }, "None open"),
  );
  const settled = (summary.recently_settled ?? []).map((record) =>
    recordItem(record, formatUtc(record.settled_at)),
  );
  $("expectations-settled").replaceChildren(
    ...(settled.length ? settled : [el("li", { class: "muted" }, "None yet")]),
  );
  setText(
    "match-rate",
    summary.match_rate === null ? "— (nothing decided yet)" : formatPercent(summary.match_rate, 2),
  );
}

export function renderJobs(jobs) {
  const items = jobs.map((job) => {
    const percent = `${Math.floor(job.progress * 100)}%`;
    return el(
      "li",
      { id: `job-${job.id}`, "data-state": job.state },
      el(
        "div",
        {},
        el("strong", {}, `#${job.id} ${job.kind}`),
        ` ledgers ${formatCount(job.first_ledger)}–${formatCount(job.last_ledger)}`,
      ),
      el(
        "div",
        { class: "progress-line" },
        el("progress", {
          max: "1",
          value: String(job.progress),
          "aria-label": `Job ${job.id} progress`,
        }),
        el("span", { class: "pct" }, percent),
      ),
      el(
        "div",
        { class: "muted small job-progress" },
        jobProgressText(job),
        job.error ? ` · ${job.error}` : "",
      ),
    );
  });
  $("jobs").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "None yet")]));
}

export function renderConnection(state, detail) {
  const node = $("connection");
  node.dataset.state = state;
  const labels = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…" };
  setText("connection", labels[state] ?? `disconnected: ${detail ?? "retrying"}`);
}

export function notice(kind, message) {
  const box = $("notice");
  box.dataset.kind = kind;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  setText("notice-text", message);
  box.hidden = false;
}

export function renderSnapshot(snapshot) {
  renderStatus(snapshot.status);
  renderEvents(snapshot.events);
  renderDiscrepancies(snapshot.discrepancies);
  renderExpectations(snapshot.expectations);
  renderJobs(snapshot.jobs);
  renderCatchUp(snapshot.catch_up ?? null);
}

// The dashboard: one live stream of snapshots (GET /api/stream) plus the telemetry window
// (GET /api/telemetry) for the charts' history. State is rebuilt from scratch on every
// (re)connection, so a page that lost its connection shows the truth again once back.

import { installActions } from "./actions.js";
import { adminToken, call, explainUrl, streamUrl } from "./api.js";
import { Charts } from "./charts.js";
import { $ } from "./dom.js";
import { renderConnection, renderSnapshot, renderTelemetry } from "./render.js";
import { connect } from "./stream.js";
import { chartSeries, mergeSamples, windowRates } from "./telemetry.js";

// readNeedsToken: learnt when the stream is refused and an anonymous read gets a 401.
const state = { snapshot: null, samples: [], readNeedsToken: false };

const charts = new Charts({
  throughput: $("chart-throughput"),
  lag: $("chart-lag"),
  process: $("chart-process"),
});

function showTelemetry() {
  const latest = state.samples.length ? state.samples[state.samples.length - 1] : null;
  renderTelemetry(latest, windowRates(state.samples));
  charts.update(chartSeries(state.samples));
}

async function loadHistory() {
  const result = await call("GET", "api/telemetry");
  if (!result.ok) return;
  // Samples from before a reconnection may come from a process that has since restarted;
  // keep only the service's own window plus what the new stream has sent since.
  state.samples = mergeSamples(state.samples, result.body.samples);
  showTelemetry();
}

function onSnapshot(snapshot) {
  state.snapshot = snapshot;
  renderSnapshot(snapshot);
  if (snapshot.telemetry.latest) {
    state.samples = mergeSamples(state.samples, [snapshot.telemetry.latest]);
  }
  showTelemetry();
}

async function onState(connection) {
  if (connection !== "refused") {
    renderConnection(connection);
    return;
  }
  // EventSource does not say why a server refused it; the same question over fetch does.
  const anonymous = await call("GET", "api/status", undefined, { anonymous: true });
  if (anonymous.status === 401) state.readNeedsToken = true;
  const probe =
    state.readNeedsToken && adminToken.get() ? await call("GET", "api/status") : anonymous;
  const hint = probe.status === 401 ? " (enter a token above)" : "";
  renderConnection("refused", probe.ok ? "the stream was refused; retrying" : probe.message + hint);
}

function showToken() {
  const present = Boolean(adminToken.get());
  $("token-form").hidden = present;
  $("token-set").hidden = !present;
}

const stream = connect({
  url: () => streamUrl(state.readNeedsToken),
  onOpen: () => {
    state.samples = [];
    loadHistory();
  },
  onSnapshot,
  onState,
});

$("token-form").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  const value = $("token-input").value.trim();
  $("token-input").value = "";
  if (!value) return;
  adminToken.set(value);
  showToken();
  // With READ_TOKEN set the stream itself needs the token.
  stream.restart();
});

$("token-forget").addEventListener("click", () => {
  adminToken.clear();
  showToken();
  stream.restart();
});

// Explain links are plain links (they open in a new tab, bookmark and copy as links); only
// when reads need a token does a click go through here, to put a ticket in the URL.
async function followExplainLink(event) {
  const link = event.target instanceof Element ? event.target.closest("a.explain") : null;
  if (!link || event.button > 1 || !state.readNeedsToken || !adminToken.get()) return;
  event.preventDefault();
  const url = await explainUrl(link.getAttribute("href"), state.readNeedsToken);
  const newTab = event.button === 1 || event.ctrlKey || event.metaKey || event.shiftKey;
  if (newTab) window.open(url, "_blank", "noopener");
  else window.location.assign(url);
}

document.addEventListener("click", followExplainLink);
// A middle click is an auxclick, not a click.
document.addEventListener("auxclick", followExplainLink);

$("notice-close").addEventListener("click", () => {
  $("notice").hidden = true;
});

installActions(() => state.snapshot?.status ?? null);
showToken();

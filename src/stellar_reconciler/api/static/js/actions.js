// Operator actions: each one says what it will do in a confirmation dialog, then calls the
// public API with the admin token. The API decides; the page shows its answer, refusals
// included, in the API's own words.

import { adminToken, call } from "./api.js";
import { $ } from "./dom.js";
import { formatCount, planRescan } from "./format.js";
import { notice } from "./render.js";

// Resolves to {confirmed, note}.
function confirmDialog({ title, text, action, askNote = false }) {
  const dialog = $("confirm");
  const note = $("confirm-note");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  $("confirm-note-field").hidden = !askNote;
  note.required = askNote;
  note.value = "";
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => resolve({ confirmed: dialog.returnValue === "confirm", note: note.value.trim() }),
      { once: true },
    );
  });
}

function report(result, success) {
  if (result.ok) {
    notice("ok", success(result.body));
    return;
  }
  let hint = "";
  if (result.status === 401) {
    hint = adminToken.get()
      ? " The admin token entered for this tab was not accepted."
      : " Enter the admin token at the top of the page.";
  }
  const what = result.status ? `Refused (HTTP ${result.status})` : "Failed";
  notice("error", `${what}: ${result.message}.${hint}`);
}

function checkpointText(status) {
  const ledger = status?.last_processed_ledger;
  return ledger === null || ledger === undefined
    ? "the start ledger"
    : `ledger ${formatCount(ledger + 1)}`;
}

export function installActions(currentStatus) {
  $("pause").addEventListener("click", async () => {
    const answer = await confirmDialog({
      title: "Pause the worker?",
      text:
        "The worker finishes the batch in flight, then takes no new ledgers until resumed. " +
        "The HTTP server, the API and this page stay up; health reports “degraded: paused”.",
      action: "Pause",
    });
    if (answer.confirmed) report(await call("POST", "api/worker/pause"), () => "Worker paused.");
  });

  $("resume").addEventListener("click", async () => {
    const answer = await confirmDialog({
      title: "Resume the worker?",
      text: `The worker continues from ${checkpointText(currentStatus())} and catches up with the network.`,
      action: "Resume",
    });
    if (answer.confirmed) report(await call("POST", "api/worker/resume"), () => "Worker resumed.");
  });

  $("restart").addEventListener("click", async () => {
    const answer = await confirmDialog({
      title: "Restart the worker?",
      text:
        "The running worker stops (a batch in flight commits or rolls back, never half) and a " +
        `fresh one starts from ${checkpointText(currentStatus())}. The HTTP server keeps ` +
        "running and this page stays connected.",
      action: "Restart worker",
    });
    if (answer.confirmed) {
      report(await call("POST", "api/worker/restart"), () => "Worker restart requested.");
    }
  });

  $("rescan-form").addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const plan = planRescan($("rescan-from").value, $("rescan-to").value, currentStatus());
    $("rescan-error").textContent = plan.ok ? "" : plan.error;
    if (!plan.ok) return;
    const range = `${formatCount(plan.first)}–${formatCount(plan.last)}`;
    const answer = await confirmDialog({
      title: `Rescan ledgers ${range}?`,
      text:
        `${formatCount(plan.count)} ${plan.count === 1 ? "ledger" : "ledgers"} will be reprocessed: ` +
        "their events are read again from the RPC and replace the stored ones, one transaction " +
        "per batch. Progress shows under Jobs.",
      action: `Rescan ${formatCount(plan.count)} ${plan.count === 1 ? "ledger" : "ledgers"}`,
    });
    if (!answer.confirmed) return;
    const result = await call("POST", "api/rescans", {
      from_ledger: plan.first,
      to_ledger: plan.last,
    });
    report(
      result,
      (job) =>
        `Rescan job #${job.id} queued: ${formatCount(job.total_ledgers)} ledgers (${range}).`,
    );
  });

  $("discrepancies-newest").addEventListener("click", async (clicked) => {
    const button = clicked.target.closest("button[data-resolve]");
    if (!button) return;
    const id = button.dataset.resolve;
    const answer = await confirmDialog({
      title: `Resolve discrepancy #${id}?`,
      text:
        `Discrepancy #${id} (${button.dataset.kind}) is marked resolved with your note and ` +
        "no longer counts as open. The record and your note stay in the audit log.",
      action: "Resolve",
      askNote: true,
    });
    if (!answer.confirmed) return;
    const result = await call("POST", `api/discrepancies/${id}/resolve`, { note: answer.note });
    report(result, () => `Discrepancy #${id} resolved.`);
  });
}

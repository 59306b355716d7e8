"""Controls: an operator's pause and resume reach the status the worker and health read."""

from __future__ import annotations

from stellar_reconciler.control import Controls
from stellar_reconciler.models import NetworkTip
from stellar_reconciler.status import ServiceStatus


def test_pause_and_resume_reach_the_status_and_wake_live_views() -> None:
    """Paused through the controls, a synced service is degraded saying so; resumed, synced
    again; each change bumps the version live views wait on."""
    status = ServiceStatus()
    status.observe_tip(NetworkTip(latest_ledger=100, oldest_ledger=1))
    status.record_progress(100)
    controls = Controls(status)
    seen = status.version
    controls.pause()
    assert status.paused and status.version == seen + 1
    state, reason = status.state()
    assert state == "degraded" and reason is not None and "paused by an operator" in reason
    controls.resume()
    assert not status.paused and status.version == seen + 2
    assert status.state() == ("synced", None)

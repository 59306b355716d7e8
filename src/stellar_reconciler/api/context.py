"""What every route reads: the store, the status, the metrics and the safe settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from stellar_reconciler.control import Controls
from stellar_reconciler.metrics import Metrics
from stellar_reconciler.status import ServiceStatus
from stellar_reconciler.store import Store
from stellar_reconciler.telemetry import Telemetry


@dataclass
class ApiContext:
    store: Store
    status: ServiceStatus
    metrics: Metrics
    controls: Controls
    telemetry: Telemetry
    service_name: str = "stellar-reconciler"
    safe_settings: dict[str, Any] = field(default_factory=dict)
    # The settings a proof bundle states (proof.settings_part).
    proof_settings: dict[str, Any] = field(default_factory=dict)
    admin_token: str = ""
    read_token: str = ""


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.context
    return ctx

"""The HTTP API: health and metrics, the indexed data, reconciliation and expectations, the
operator's admin endpoints, the live stream, the dashboard at / and the OpenAPI document."""

from stellar_reconciler.api.app import create_app
from stellar_reconciler.api.context import ApiContext

__all__ = ["ApiContext", "create_app"]

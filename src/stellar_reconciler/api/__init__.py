"""The HTTP API: health, metrics, JSON data and (later) the dashboard."""

from stellar_reconciler.api.app import create_app
from stellar_reconciler.api.context import ApiContext

__all__ = ["ApiContext", "create_app"]

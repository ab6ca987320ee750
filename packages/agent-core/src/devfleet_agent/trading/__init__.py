"""Work trading on the agent: résumés, auctions and worker pools (docs/trading.md)."""

from __future__ import annotations

from .host import TradingHost
from .workers import Worker, component_agent_id, worker_of

__all__ = ["TradingHost", "Worker", "component_agent_id", "worker_of"]

"""Attach the optional subsystems (components, dynamic actors) to an agent."""

from __future__ import annotations

from .agent import Agent
from .services import NodeServices

__all__ = ["attach_subsystems"]


def attach_subsystems(agent: Agent) -> None:
    """Give ``agent`` everything a production node runs besides its core."""
    _services: NodeServices = agent  # the agent keeps the seam's promise (checked by mypy)
    del _services
    from .actors.host import ActorHost
    from .components.host import ComponentHost
    from .trading import TradingHost

    agent.add_subsystem(ComponentHost(agent))
    agent.add_subsystem(ActorHost(agent))
    agent.add_subsystem(TradingHost(agent))

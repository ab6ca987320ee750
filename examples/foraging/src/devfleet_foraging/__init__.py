"""The ARGoS foraging swarm on devfleet: the behaviour component, the arena, the runner.

- :mod:`.controller`: the footbot_foraging state machine and the adaptive rule (pure).
- :mod:`.arena`: the seeded, deterministic world (pure).
- :mod:`.component`: the ``foraging`` component (one per robot node).
- :mod:`.bridge`: the arena behind one rosbridge endpoint per robot.
- :mod:`.runner`: a whole run (broker, arena, robot agents, operator actions, summary);
  ``devfleet-foraging`` / ``python -m devfleet_foraging``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

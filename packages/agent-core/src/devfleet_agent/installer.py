"""Old name of :mod:`devfleet_agent.pip_runner`, kept only for ``actors/`` until the
actors' split moves its import (then this module is removed)."""

from __future__ import annotations

from .pip_runner import check_requirement, pip_install

__all__ = ["check_requirement", "pip_install"]

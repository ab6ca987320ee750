"""The devfleet test kit: fixtures and fakes for component authors and for us.

Installed as a pytest plugin (entry point ``pytest11``: ``devfleet``), so the
fixtures are available in any project that installs
``devfleet-component-base[testing]``.
"""

from __future__ import annotations

from .fake_context import FakeContext, Published

__all__ = ["FakeContext", "Published"]

"""The test kit's pytest plugin (entry point ``pytest11: devfleet``).

Placeholder so the declared entry point imports: the broker fixtures land here
(a teammate's branch); take that version on merge.
"""

from __future__ import annotations

__all__: list[str] = []

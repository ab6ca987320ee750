"""``python -m devfleet_foraging``: the runner's CLI."""

from __future__ import annotations

import sys

from .runner import main

sys.exit(main())

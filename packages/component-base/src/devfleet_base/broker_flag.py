"""The ``--broker`` flag's argparse action, apart from the URL parser.

``devfleet --help`` builds a parser with this action and parses no URL: keeping it out
of :mod:`devfleet_base.broker_url` keeps dataclasses (and inspect, ast, dis) and
urllib.parse off the help path (~5 ms of a ~35 ms start). Only argparse is imported.
"""

from __future__ import annotations

import argparse

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~4 ms at start-up
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["BrokerListAction"]


class BrokerListAction(argparse.Action):
    """``--broker`` given several times: the URLs join into one comma-separated value
    (a default from the environment is replaced, not extended)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        seen_attr = f"_{self.dest}_given"
        given = [*getattr(namespace, seen_attr, []), str(values)]
        setattr(namespace, seen_attr, given)
        setattr(namespace, self.dest, ",".join(given))

"""``ember._logging.set_logs(graph_code=True)`` (or ``EMBER_LOGS=graph_code``): print what
the compiler captured and generated."""

from __future__ import annotations

import os

__all__ = ["set_logs", "enabled"]
_SET: set = set()


def set_logs(*, graph_code=None, **kwargs):
    """Switch the compiler's logs on or off (``graph_code``: the captured graph and the
    generated source of each compile, on stderr)."""
    if graph_code is not None:
        (_SET.add if graph_code else _SET.discard)("graph_code")


def enabled():
    """The log names switched on (``set_logs`` and the comma list in ``EMBER_LOGS``)."""
    env = {s.strip().lstrip("+") for s in os.environ.get("EMBER_LOGS", "").split(",")}
    return _SET | env

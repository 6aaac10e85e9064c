"""A round's messages kept at most ``window`` in flight at once (``federation.max-in-flight``).

Flower's simulation engine scans its store of undelivered messages for every node of the federation ten times a
second (``add_messages_to_queue`` in Flower 1.41's ``vce_api``): a round that pushes all K of its messages at once
costs it N x K checks per scan, which at N = 1,000 and K = 100 kept the simulation process busy on one of the two
cores while the ClientApps ran on what was left. Keeping only a few messages in flight (a few more than the
ClientApps that run at once) makes the scan N x window, and the round is not slower: the ClientApps never wait for
work. In a deployment, where every device works at once, the default (0: all of a round's messages at once) stays.

:class:`WindowedGrid` is a view of a Grid whose ``send_and_receive`` does this; everything else is delegated.

Example:
    >>> class Echo:  # a grid whose replies arrive at once
    ...     def __init__(self): self.pushed, self.most = [], 0
    ...     def push_messages(self, msgs):
    ...         self.pushed += list(msgs); self.most = max(self.most, len(self.pushed)); return list(msgs)
    ...     def pull_messages(self, ids):
    ...         done = [i for i in self.pushed if i in ids]; self.pushed = [i for i in self.pushed if i not in ids]
    ...         return [Reply(i) for i in done]
    >>> class Reply:
    ...     def __init__(self, i): self.metadata = type("M", (), {"reply_to_message_id": i})()
    >>> grid = Echo()
    >>> replies = send_windowed(grid, list(range(10)), window=3, timeout=5)
    >>> sorted(r.metadata.reply_to_message_id for r in replies), grid.most
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 3)
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from shared.errors import ConfigError

__all__ = ["WindowedGrid", "send_windowed"]

POLL_S = 0.25
"""Seconds between two asks for replies while nothing came back (Flower's own ``send_and_receive`` waits 3 s)."""


def _check(window: int) -> None:
    if window < 1:
        raise ConfigError(f"federation.max-in-flight must be >= 1 here, got {window}")


def send_windowed(
    grid: Any, messages: Iterable[Any], *, window: int, timeout: float | None, poll_s: float = POLL_S
) -> list[Any]:
    """Push ``messages`` keeping at most ``window`` without a reply, and return the replies that came back within
    ``timeout`` seconds of the first push (None: wait for all). Messages still unsent at the timeout are not sent:
    the round goes on without them, as without a client that did not answer."""
    _check(window)
    pending = list(messages)
    pending.reverse()  # pop() from the end sends them in their order
    waiting: set[str] = set()
    replies: list[Any] = []
    end = None if timeout is None else time.monotonic() + timeout
    while pending or waiting:
        if pending and len(waiting) < window:
            batch = [pending.pop() for _ in range(min(window - len(waiting), len(pending)))]
            waiting.update(grid.push_messages(batch))
        got = list(grid.pull_messages(list(waiting))) if waiting else []
        replies.extend(got)
        waiting.difference_update(m.metadata.reply_to_message_id for m in got)
        if end is not None and time.monotonic() >= end:
            break
        if not got and (waiting or pending):
            time.sleep(poll_s)
    return replies


class WindowedGrid:
    """A view of a Grid whose ``send_and_receive`` keeps at most ``window`` messages in flight."""

    def __init__(self, grid: Any, window: int):
        _check(window)
        self._grid = grid
        self.window = window

    def send_and_receive(self, messages: Iterable[Any], *, timeout: float | None = None) -> list[Any]:
        return send_windowed(self._grid, messages, window=self.window, timeout=timeout)

    def __getattr__(self, name: str):
        return getattr(self._grid, name)

"""A round's messages kept at most ``federation.max-in-flight`` in flight (server/window.py), against a fake grid whose
nodes answer after a delay: every message is sent once, in order, never more than the window at once, and the
round's timeout still ends the wait."""

from __future__ import annotations

import threading
import time

import pytest

from server.window import WindowedGrid, send_windowed
from shared.errors import ConfigError


class _Meta:
    def __init__(self, reply_to: str):
        self.reply_to_message_id = reply_to


class _Reply:
    def __init__(self, reply_to: str):
        self.metadata = _Meta(reply_to)


class SlowGrid:
    """Each pushed message is answered ``delay`` seconds after its push; records the most in flight at once."""

    def __init__(self, delay: float):
        self.delay = delay
        self.sent: list[str] = []
        self.in_flight: dict[str, float] = {}
        self.most = 0
        self.lock = threading.Lock()

    def push_messages(self, messages):
        ids = []
        with self.lock:
            for m in messages:
                self.sent.append(m)
                self.in_flight[m] = time.monotonic() + self.delay
                ids.append(m)
            self.most = max(self.most, len(self.in_flight))
        return ids

    def pull_messages(self, ids):
        now = time.monotonic()
        with self.lock:
            done = [i for i in ids if i in self.in_flight and self.in_flight[i] <= now]
            for i in done:
                del self.in_flight[i]
        return [_Reply(i) for i in done]

    def get_node_ids(self):
        return [1, 2, 3]


def test_every_message_is_sent_once_in_order_never_more_than_the_window_at_once():
    grid = SlowGrid(delay=0.02)
    messages = [f"m{i}" for i in range(12)]
    replies = send_windowed(grid, messages, window=3, timeout=30, poll_s=0.01)
    assert grid.sent == messages  # each once, in the order given
    assert sorted(r.metadata.reply_to_message_id for r in replies) == sorted(messages)
    assert grid.most == 3


def test_the_timeout_ends_the_wait_and_what_was_not_sent_is_not_sent():
    grid = SlowGrid(delay=0.3)
    started = time.monotonic()
    replies = send_windowed(grid, [f"m{i}" for i in range(10)], window=2, timeout=0.5, poll_s=0.01)
    assert time.monotonic() - started < 2.0
    assert 0 < len(replies) < 10 and len(grid.sent) < 10  # the rest of the round goes on without them


def test_a_windowed_grid_delegates_everything_else_and_refuses_a_window_below_one():
    grid = SlowGrid(delay=0.0)
    view = WindowedGrid(grid, 2)
    assert view.get_node_ids() == [1, 2, 3]
    assert len(view.send_and_receive(["a", "b", "c"], timeout=5)) == 3 and grid.most <= 2
    with pytest.raises(ConfigError, match="federation.max-in-flight"):
        WindowedGrid(grid, 0)

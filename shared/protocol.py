"""The message protocol between server and clients: the metric keys both sides read and write.

Both the ClientApp (:mod:`client.client_app`, :mod:`client.node`) and the ServerApp (:mod:`server`) use these
names; neither imports the other.

Example:
    >>> "llm-failures" in FAULT_COUNTERS, DP_WEIGHT_KEY
    (True, 'dp-weight')
"""

from __future__ import annotations

__all__ = ["FAULT_COUNTERS", "DP_WEIGHT_KEY"]

FAULT_COUNTERS = ("skipped-examples", "offlabel-answers", "degraded-answers", "failed-answers", "llm-failures",
                  "llm-retries", "llm-refused")
"""Counters a client reports beside its metrics: what the LLM's faults cost it (training examples skipped,
LLM answers outside the label set, answers given without the LLM, LLM calls failed, retried or refused by the
circuit breaker). The server sums them per round (:class:`server.federation.RoundLog`)."""

DP_WEIGHT_KEY = "dp-weight"
"""With DP accounting every client weighs the same; clients report this key as 1."""

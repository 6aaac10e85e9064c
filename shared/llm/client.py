"""A client for any OpenAI-compatible ``/v1/chat/completions`` endpoint: the black-box LLM.

- Configured by base URL, model and API key, from arguments or the environment
  (``FEDHYDRA_LLM_BASE_URL``, ``FEDHYDRA_LLM_MODEL``, ``FEDHYDRA_LLM_API_KEY`` or ``OPENAI_API_KEY``).
- A total deadline per request (``timeout_s`` covers connecting, the headers and the whole body: an endpoint that
  sends a byte now and then cannot keep a request alive past it; it counts as a timeout). Bounded answers: at most
  ``max_response_bytes`` of body are read (counted while streaming, before anything is parsed), and an answer longer
  than ``answer_chars_per_token * max_tokens + 256`` characters is refused; either is an
  :class:`~shared.errors.LLMResponseError` naming the bound, never cached and never returned (nor is such an answer
  found in the cache).
- Retries with exponential backoff and full jitter on connection errors, timeouts, HTTP 429
  and 5xx (a ``Retry-After`` header is honoured, capped at the maximum backoff); typed errors for the
  rest (:mod:`shared.errors`).
- A retry budget per client: retries may number at most ``retry_budget_min`` plus ``retry_budget_ratio``
  times the calls sent, so an endpoint that fails often is not hammered with retries (a call whose retry is
  refused fails with :class:`~shared.errors.LLMRetriesExhausted`, like one that used up its retries).
- A circuit breaker: after ``breaker_threshold`` calls in a row found the endpoint unavailable (their retries
  exhausted), calls fail at once with :class:`~shared.errors.LLMUnavailable` for ``breaker_cooldown_s``. An
  endpoint that answers, even with an error status or a malformed body, is available: such answers are not
  retried (they raise at once) and close the breaker.
- N candidates are N requests with seeds ``seed, seed+1, ...`` (llama.cpp's server ignores ``n``).
- Concurrency: up to ``concurrency`` requests in flight (over all threads that share the client).
  :meth:`LLMClient.complete_many` sends a batch of independent requests at once and returns the answers in
  the batch's order, whatever order they complete in: cache lookups and the budget are settled in the
  batch's order before anything is sent, so the same requests are sent and used at every concurrency. A
  request already in flight is not sent twice (a second caller waits for the first one's answer).
- Every answer goes through a persistent :class:`~shared.llm.cache.ResponseCache` keyed by the
  endpoint's identity, the model, the messages and the sampling parameters; with temperature 0 the seed
  is not part of the key (greedy answers do not depend on it). A cache file that is no SQLite database (damaged,
  or another file given as the cache) raises :class:`LLMCacheError`, which says what to do; the client does not
  delete or rebuild it (it may be a file of the user's given by mistake).
- :class:`CallBudget` caps the network calls spent on one user; cache hits are free.
- :attr:`LLMClient.stats` counts network calls, cache hits, retries and failures.

Example (needs a running server, so not a doctest)::

    client = LLMClient(LLMConfig(base_url="http://127.0.0.1:8080/v1"))
    client.complete([{"role": "user", "content": "Say hi"}], max_tokens=8)   # 'Hi!'
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3

from shared.errors import (
    ConfigError,
    FedHydraError,
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMResponseError,
    LLMRetriesExhausted,
    LLMTimeoutError,
    LLMUnavailable,
)
from shared.llm.cache import ResponseCache, request_key
from shared.llm.deadline import Deadline, DeadlineAdapter, read_capped, watching
from shared.paths import llm_cache_path

__all__ = [
    "LLMConfig",
    "LLMStats",
    "LLMClient",
    "LLMCall",
    "LLMMeter",
    "CallBudget",
    "BudgetExhausted",
    "Message",
    "LLMCacheError",
    "ANSWER_SLACK_CHARS",
]

Message = Mapping[str, str]

ANSWER_SLACK_CHARS = 256
"""Characters an answer may hold beyond ``answer_chars_per_token * max_tokens``."""

_ERROR_BODY_BYTES = 4096  # what is read of an error status's body (it only goes into the error's message)


class LLMCacheError(FedHydraError):
    """The LLM answer cache file cannot be used (not an SQLite database, damaged, or not openable). It holds only
    cached LLM answers, so moving it away costs LLM calls, nothing else; the message says so."""


class BudgetExhausted(LLMError):
    """A :class:`CallBudget` has no network calls left (cached answers are still served)."""


@dataclass(frozen=True)
class LLMConfig:
    """How to reach the black-box LLM.

    Attributes:
        base_url: the API root, e.g. ``http://127.0.0.1:8080/v1`` (``/chat/completions`` is appended).
        model: the model name sent in each request.
        api_key: sent as ``Authorization: Bearer``; never written to the cache or logs.
        endpoint_id: the endpoint's identity in cache keys; defaults to ``base_url``. The embedded server
            sets it to its model file, so that a restart on another port still hits the cache.
        timeout_s: the total deadline of one request attempt: connecting, the headers and the whole body, however
            slowly they come (a timed-out attempt is retried like any timeout).
        max_retries: retries after the first attempt for retryable failures.
        backoff_s, backoff_max_s: the first backoff and its cap; attempt ``i`` waits up to
            ``min(backoff_max_s, backoff_s * 2**i)``, uniformly jittered.
        cache_path: the SQLite cache file; ``None`` uses :func:`shared.paths.llm_cache_path`; ``""`` disables it.
        breaker_threshold, breaker_cooldown_s: after this many calls in a row find the endpoint unavailable
            (retries exhausted: connection errors, timeouts, 429 or 5xx every time), calls fail at once
            (:class:`~shared.errors.LLMUnavailable`, no network) for the cooldown, so a dead endpoint costs a
            client seconds, not retries times backoff for every call.
        retry_budget_min, retry_budget_ratio: the client may retry at most ``retry_budget_min +
            retry_budget_ratio * calls sent`` times in all (``retry_budget_ratio`` < 0: no budget).
        concurrency: most requests in flight at once (1: one at a time). Match it to what the endpoint
            serves in parallel: the embedded server's slots, or a remote API's rate limit (16-64 for vLLM
            or a hosted API is typical).
        same_prompt_in_turn: requests of a batch with the same messages (a greedy answer and its samples) are
            sent one after another, other prompts beside them: for a server that keeps a prompt's computation
            only in the slot that served it (llama.cpp's ``llama-server``), so that the prompt is computed once.
            Off for servers that share a prompt's computation between concurrent requests (vLLM).
        max_response_bytes: the most bytes of a response body read (after any content decoding); a longer one is
            refused (:class:`~shared.errors.LLMResponseError`) without reading further. 1 MiB is far over a chat
            completion of thousands of tokens.
        answer_chars_per_token: an answer may hold at most ``answer_chars_per_token * max_tokens`` characters plus
            :data:`ANSWER_SLACK_CHARS`; a longer one is refused (a token is about 4 characters; 64 leaves room for
            the longest tokens of common vocabularies).
    """

    base_url: str
    model: str = "default"
    api_key: str | None = field(default=None, repr=False)
    endpoint_id: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    cache_path: str | None = None
    breaker_threshold: int = 3
    breaker_cooldown_s: float = 30.0
    retry_budget_min: int = 10
    retry_budget_ratio: float = 0.5
    concurrency: int = 1
    same_prompt_in_turn: bool = False
    max_response_bytes: int = 1 << 20
    answer_chars_per_token: int = 64

    def __post_init__(self) -> None:
        if not self.base_url or not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"llm base_url must start with http:// or https://, got {self.base_url!r}")
        if self.timeout_s <= 0:
            raise ConfigError(f"llm timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ConfigError(f"llm max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_s < 0 or self.backoff_max_s < 0:
            raise ConfigError("llm backoff_s and backoff_max_s must be >= 0")
        if self.retry_budget_min < 0:
            raise ConfigError(f"llm retry_budget_min must be >= 0, got {self.retry_budget_min}")
        if not isinstance(self.concurrency, int) or isinstance(self.concurrency, bool) or self.concurrency < 1:
            raise ConfigError(f"llm concurrency must be an integer >= 1, got {self.concurrency!r}")
        if not math.isfinite(self.timeout_s):
            raise ConfigError(f"llm timeout_s must be finite, got {self.timeout_s}")
        for name, least in (("max_response_bytes", 1024), ("answer_chars_per_token", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"llm {name} must be an integer >= {least}, got {value!r}")

    def max_answer_chars(self, max_tokens: int) -> int:
        """The longest answer accepted for a request of ``max_tokens``.

        >>> LLMConfig(base_url="http://x/v1").max_answer_chars(8)
        768
        """
        return self.answer_chars_per_token * max(int(max_tokens), 0) + ANSWER_SLACK_CHARS

    @classmethod
    def from_env(cls, **overrides: Any) -> LLMConfig:
        """Build from ``FEDHYDRA_LLM_*`` variables; keyword arguments that are not None win."""
        env = {
            "base_url": os.environ.get("FEDHYDRA_LLM_BASE_URL"),
            "model": os.environ.get("FEDHYDRA_LLM_MODEL"),
            "api_key": os.environ.get("FEDHYDRA_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY"),
        }
        values: dict[str, Any] = {k: v for k, v in env.items() if v}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "base_url" not in values:
            raise ConfigError("no LLM endpoint: set FEDHYDRA_LLM_BASE_URL or pass base_url")
        return cls(**values)

    @property
    def identity(self) -> str:
        return self.endpoint_id or self.base_url.rstrip("/")


@dataclass
class LLMStats:
    """Counters of one client (shared by its budgets)."""

    calls: int = 0
    cache_hits: int = 0
    attempts: int = 0
    retries: int = 0
    failures: int = 0
    refused: int = 0
    retries_denied: int = 0
    sent: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "llm_calls": self.calls,
            "llm_cache_hits": self.cache_hits,
            "llm_retries": self.retries,
            "llm_failures": self.failures,
            "llm_refused": self.refused,
            "llm_retries_denied": self.retries_denied,
            "llm_seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class LLMCall:
    """One request of a batch for :meth:`LLMClient.complete_many` (the arguments of :meth:`LLMClient.complete`).

    >>> LLMCall([{"role": "user", "content": "hi"}], temperature=0.7, seed=3).seed
    3
    """

    messages: Sequence[Message]
    temperature: float = 0.0
    max_tokens: int = 64
    seed: int = 0
    top_p: float = 1.0
    stop: Sequence[str] | None = None


@dataclass
class LLMMeter:
    """What the calls made inside one :meth:`LLMClient.meter` block cost: network requests (sent, whatever
    their outcome), cache hits, the requests' own seconds (summed: with several in flight they overlap) and
    failures. Charged from the thread that asked, also for the batch requests it handed to other threads.
    """

    requests: int = 0
    cache_hits: int = 0
    seconds: float = 0.0
    failures: int = 0

    def as_dict(self) -> dict[str, float]:
        return {
            "llm_requests": self.requests,
            "llm_cache_hits": self.cache_hits,
            "llm_seconds": round(self.seconds, 3),
            "llm_failures": self.failures,
        }


class LLMClient:
    """Cached, retrying, concurrent chat-completions client; see the module docstring."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        cache: ResponseCache | None = None,
        session: requests.Session | None = None,
        sleep=time.sleep,
    ):
        self.config = config
        if cache is None and config.cache_path != "":
            cache = _open_cache(Path(config.cache_path) if config.cache_path else llm_cache_path())
        self.cache = cache
        self.stats = LLMStats()
        self._watched = session is None  # its connections obey the deadline watchdog (shared.llm.deadline)
        if session is None:
            session = requests.Session()
            pool = max(10, config.concurrency)
            adapter = DeadlineAdapter(pool_connections=pool, pool_maxsize=pool)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self._session = session
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._failed_in_a_row = 0
        self._open_until = 0.0
        self._gate = threading.BoundedSemaphore(config.concurrency)
        self._inflight: dict[str, Future] = {}
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None

    # -- public API -------------------------------------------------------------------------------
    def request(
        self,
        messages: Sequence[Message],
        *,
        temperature: float = 0.0,
        max_tokens: int = 64,
        seed: int = 0,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The request body (without the API key) that :meth:`complete` sends and caches."""
        return {
            "model": self.config.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "temperature": float(temperature),
            "top_p": float(top_p),
            "max_tokens": int(max_tokens),
            "seed": int(seed) if temperature > 0 else 0,
            **({"stop": list(stop)} if stop else {}),
        }

    def cache_key(self, body: Mapping[str, Any]) -> str:
        return request_key({"endpoint": self.config.identity, **body})

    def cached(self, messages: Sequence[Message], **params: Any) -> str | None:
        """The cached answer for these arguments, without any network call."""
        if self.cache is None:
            return None
        body = self.request(messages, **params)
        hit = self._cache_get(self.cache_key(body))
        return hit if hit is None or len(hit) <= self.config.max_answer_chars(body["max_tokens"]) else None

    def complete(
        self,
        messages: Sequence[Message],
        *,
        temperature: float = 0.0,
        max_tokens: int = 64,
        seed: int = 0,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        budget: CallBudget | None = None,
    ) -> str:
        """One chat completion's text (cached).

        Raises:
            LLMRetriesExhausted: retryable failures (connection errors, timeouts: ``timeout_s`` is the deadline of
                each attempt, 429, 5xx) outlasted ``max_retries``.
            LLMHTTPError: a non-retryable HTTP status (e.g. 400, 401, 404).
            LLMResponseError: a 200 answer that is not a chat completion (bad JSON, no choices), or over a bound
                (``max_response_bytes``, :meth:`LLMConfig.max_answer_chars`).
            LLMCacheError: the cache file is damaged.
            BudgetExhausted: the answer is not cached and ``budget`` has no calls left.
        """
        result = self.complete_many([LLMCall(messages, temperature, max_tokens, seed, top_p, stop)], budget=budget)[0]
        if isinstance(result, LLMError):
            raise result
        return result

    def complete_many(self, calls: Sequence[LLMCall], *, budget: CallBudget | None = None) -> list[str | LLMError]:
        """The answers of independent requests, in the order of ``calls``; a failed one is its exception.

        Cache hits and the budget are settled first, in the order of ``calls`` (so which requests are sent
        does not depend on timing); the rest are sent with up to ``concurrency`` in flight. Repeated
        requests in the batch are sent once.
        """
        meters = list(getattr(self._local, "meters", ()))
        results: list[str | LLMError | None] = [None] * len(calls)
        to_send: dict[str, tuple[dict[str, Any], list[int]]] = {}
        for i, call in enumerate(calls):
            body = self.request(
                call.messages,
                temperature=call.temperature,
                max_tokens=call.max_tokens,
                seed=call.seed,
                top_p=call.top_p,
                stop=call.stop,
            )
            key = self.cache_key(body)
            if key in to_send:
                to_send[key][1].append(i)
                continue
            hit = self._cache_get(key) if self.cache is not None else None
            if hit is not None:
                self._charge(meters, hits=1)
                bound = self.config.max_answer_chars(body["max_tokens"])
                results[i] = (
                    hit
                    if len(hit) <= bound
                    else LLMResponseError(
                        f"the cached answer holds {len(hit)} characters, over the bound of {bound} for max_tokens = "
                        f"{body['max_tokens']} (answer_chars_per_token = {self.config.answer_chars_per_token}); "
                        "move the LLM answer cache away to ask again"
                    )
                )
                continue
            if budget is not None:
                try:
                    budget.spend()
                except BudgetExhausted as exc:
                    results[i] = exc
                    continue
            to_send[key] = (body, [i])
        jobs = list(to_send.items())
        if len(jobs) <= 1 or self.config.concurrency == 1:
            chains = [[job] for job in jobs]
            answered = [[self._fetch(key, body, meters)] for key, (body, _) in jobs]
        else:
            chains = self._chains(jobs)
            answered = list(
                self._executor().map(lambda chain: [self._fetch(key, body, meters) for key, (body, _) in chain], chains)
            )
        for chain, answers in zip(chains, answered):
            for (_, (_, slots)), answer in zip(chain, answers):
                for i in slots:
                    results[i] = answer
        return results  # type: ignore[return-value]

    def _chains(self, jobs: list) -> list[list]:
        """The jobs grouped into chains sent one after another: one job each, or with ``same_prompt_in_turn``
        every job of the same messages in one chain (in batch order)."""
        if not self.config.same_prompt_in_turn:
            return [[job] for job in jobs]
        groups: dict[str, list] = {}
        for job in jobs:
            groups.setdefault(json.dumps(job[1][0]["messages"], sort_keys=True), []).append(job)
        return list(groups.values())

    def sample(
        self,
        messages: Sequence[Message],
        n: int,
        *,
        temperature: float = 1.0,
        max_tokens: int = 64,
        seed: int = 0,
        top_p: float = 1.0,
        budget: CallBudget | None = None,
    ) -> list[str]:
        """``n`` candidates as ``n`` requests seeded ``seed .. seed+n-1`` (one greedy answer if temperature is 0)."""
        if temperature <= 0:
            return [self.complete(messages, temperature=0.0, max_tokens=max_tokens, budget=budget)] * n
        answers = self.complete_many(
            [LLMCall(messages, temperature, max_tokens, seed + i, top_p) for i in range(n)], budget=budget
        )
        for a in answers:
            if isinstance(a, LLMError):
                raise a
        return answers  # type: ignore[return-value]

    @contextlib.contextmanager
    def meter(self) -> Iterator[LLMMeter]:
        """Count what the calls made in this block by this thread cost (blocks nest; each is charged).

        >>> client = LLMClient(LLMConfig(base_url="http://127.0.0.1:9/v1", cache_path=""))
        >>> with client.meter() as m:
        ...     pass
        >>> m.requests
        0
        """
        meter = LLMMeter()
        stack = getattr(self._local, "meters", ())
        self._local.meters = (*stack, meter)
        try:
            yield meter
        finally:
            self._local.meters = stack

    def close(self) -> None:
        """Stop the client's worker threads (the client stays usable; they start again when needed)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # -- concurrency ------------------------------------------------------------------------------
    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="llm")
            return self._pool

    def _charge(
        self, meters: Sequence[LLMMeter], *, hits: int = 0, requests: int = 0, seconds: float = 0.0, failures: int = 0
    ) -> None:
        with self._lock:
            self.stats.cache_hits += hits
            for m in meters:
                m.cache_hits += hits
                m.requests += requests
                m.seconds += seconds
                m.failures += failures

    def _fetch(self, key: str, body: dict[str, Any], meters: Sequence[LLMMeter]) -> str | LLMError:
        """Send one request (or wait for the same one already in flight), cache the answer; never raises LLMError."""
        with self._lock:
            running = self._inflight.get(key)
            mine = running is None
            if running is None:
                running = self._inflight[key] = Future()
        if not mine:
            try:
                text = running.result()
            except LLMError as exc:
                return exc
            self._charge(meters, hits=1)
            return text
        self._local.seconds = 0.0
        try:
            text = self._post_with_retries(body)
        except LLMError as exc:
            self._charge(meters, requests=1, seconds=self._local.seconds, failures=1)
            running.set_exception(exc)
            return exc
        except BaseException as exc:  # not an LLM failure: let waiters and the caller see it
            running.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)
        try:
            if self.cache is not None:
                self._cache_put(key, body, text)
        except BaseException as exc:  # a damaged cache (LLMCacheError): waiters see it too, none hangs
            running.set_exception(exc)
            raise
        self._charge(meters, requests=1, seconds=self._local.seconds)
        running.set_result(text)
        return text

    # -- transport --------------------------------------------------------------------------------
    def _post_with_retries(self, body: Mapping[str, Any]) -> str:
        if time.monotonic() < self._open_until:
            with self._lock:
                self.stats.refused += 1
            raise LLMUnavailable(
                f"{self.config.base_url} failed {self._failed_in_a_row} calls in a row; not calling it "
                f"for {self._open_until - time.monotonic():.0f} more seconds"
            )
        try:
            text = self._post_once_with_retries(body)
        except LLMRetriesExhausted:  # the endpoint is unavailable (or too flaky to be worth retrying)
            with self._lock:
                self._failed_in_a_row += 1
                if self._failed_in_a_row >= self.config.breaker_threshold:
                    self._open_until = time.monotonic() + self.config.breaker_cooldown_s
            raise
        except LLMError:  # it answered (an error status, a malformed body): it is up
            with self._lock:
                self._failed_in_a_row = 0
                self._open_until = 0.0
            raise
        with self._lock:
            self._failed_in_a_row = 0
            self._open_until = 0.0
        return text

    def _post_once_with_retries(self, body: Mapping[str, Any]) -> str:
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        last: LLMError | None = None
        with self._lock:
            self.stats.sent += 1
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                with self._lock:
                    allowed = self._retry_allowed()
                    if allowed:
                        self.stats.retries += 1
                    else:
                        self.stats.retries_denied += 1
                        self.stats.failures += 1
                if not allowed:
                    error = LLMRetriesExhausted(attempt, last or LLMError("no attempt was made"))
                    error.args = (f"{error} (the client's retry budget is spent)",)
                    raise error
                self._sleep(self._backoff(attempt - 1, last))
            with self._lock:
                self.stats.attempts += 1
            self._gate.acquire()  # at most `concurrency` in flight; the wait is not the request's time
            started = time.monotonic()
            try:
                status, payload, retry_after = self._exchange(url, body, headers)
            except (LLMTimeoutError, LLMConnectionError) as exc:
                if getattr(exc, "retryable", True):
                    last = exc
                    continue
                with self._lock:
                    self.stats.failures += 1
                raise
            except LLMError:  # over a bound: the endpoint answered, badly
                with self._lock:
                    self.stats.failures += 1
                raise
            finally:
                self._gate.release()
                spent = time.monotonic() - started
                self._local.seconds = getattr(self._local, "seconds", 0.0) + spent
                with self._lock:
                    self.stats.seconds += spent
            if status == 429 or status >= 500:
                last = LLMHTTPError(status, _text(payload))
                last.retry_after = retry_after  # type: ignore[attr-defined]
                continue
            if status != 200:
                with self._lock:
                    self.stats.failures += 1
                raise LLMHTTPError(status, _text(payload))
            try:
                text = self._parse(payload, int(body["max_tokens"]))
            except LLMError:
                with self._lock:
                    self.stats.failures += 1
                raise
            with self._lock:
                self.stats.calls += 1
            return text
        with self._lock:
            self.stats.failures += 1
        raise LLMRetriesExhausted(self.config.max_retries + 1, last or LLMError("no attempt was made"))

    def _exchange(self, url: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> tuple[int, Any, float | None]:
        """One attempt: (status, payload, Retry-After). The payload is the body's bytes (at most
        ``max_response_bytes`` for a 200, the first :data:`_ERROR_BODY_BYTES` otherwise), or, from a session that
        is no :mod:`requests` one (a stand-in), the decoded JSON of a 200 / the text of an error.

        Raises LLMTimeoutError when the attempt outlives ``timeout_s`` (connect, headers and body together),
        LLMConnectionError when the connection fails or breaks (both retryable, except a request error of another
        kind: ``retryable = False``), LLMResponseError when the body is over ``max_response_bytes``.
        """
        timeout = self.config.timeout_s
        deadline = Deadline(timeout) if self._watched else None
        ends = time.monotonic() + timeout
        response = None
        try:
            with watching(deadline):
                try:
                    response = self._session.post(url, json=body, headers=headers, timeout=timeout, stream=True)
                    if not isinstance(response, requests.Response):  # a stand-in session: nothing to stream
                        status = int(response.status_code)
                        if status != 200:
                            return status, str(response.text)[:_ERROR_BODY_BYTES], _retry_after(response)
                        try:
                            return status, response.json(), None
                        except ValueError:
                            raise LLMResponseError("answer is not JSON") from None
                    status = response.status_code
                    limit = self.config.max_response_bytes if status == 200 else _ERROR_BODY_BYTES
                    payload = read_capped(response, limit, ends, cut=status != 200)
                except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as exc:
                    raise _timed_out(url, timeout, exc) from None
                except urllib3.exceptions.DecodeError:  # it answered, in an encoding that does not decode
                    raise LLMResponseError("answer's content encoding does not decode") from None
                except (
                    requests.ConnectionError,
                    requests.exceptions.ChunkedEncodingError,
                    urllib3.exceptions.HTTPError,
                    OSError,
                ) as exc:
                    if (deadline is not None and deadline.expired) or time.monotonic() > ends:
                        raise _timed_out(url, timeout, exc) from None
                    raise LLMConnectionError(f"cannot reach {url}: {exc.__class__.__name__}") from None
                except requests.RequestException as exc:
                    error = LLMConnectionError(f"request to {url} failed: {exc}")
                    error.retryable = False  # type: ignore[attr-defined]
                    raise error from exc
        finally:
            if deadline is not None:
                deadline.cancel()
            if response is not None and hasattr(response, "close"):
                response.close()
        if (deadline is not None and deadline.expired) or time.monotonic() > ends:  # e.g. a body cut by the watchdog
            raise _timed_out(url, timeout, None)
        return status, payload, _retry_after(response)

    def _retry_allowed(self) -> bool:
        """Whether the retry budget allows one more retry (call with the lock held)."""
        if self.config.retry_budget_ratio < 0:
            return True
        return self.stats.retries < self.config.retry_budget_min + self.config.retry_budget_ratio * self.stats.sent

    def _backoff(self, retry: int, last: LLMError | None) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_s * (2**retry))
        hinted = getattr(last, "retry_after", None)
        if hinted is not None:
            return min(self.config.backoff_max_s, max(hinted, 0.0))
        return self._rng.uniform(0.0, cap)

    def _parse(self, payload: Any, max_tokens: int) -> str:
        """The answer of a 200's payload (bytes, or already decoded JSON from a stand-in session), within bounds."""
        if isinstance(payload, (bytes, bytearray)):
            try:
                data = json.loads(payload)
            except ValueError:
                raise LLMResponseError(f"answer is not JSON: {_text(payload)[:200]!r}") from None
        else:
            data = payload
        try:
            choices = data["choices"]
            if not choices:
                raise LLMResponseError("answer has no choices")
            content = choices[0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LLMResponseError(f"answer is not a chat completion: {str(data)[:200]!r}") from None
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise LLMResponseError(f"message content is {type(content).__name__}, not text")
        bound = self.config.max_answer_chars(max_tokens)
        if len(content) > bound:
            raise LLMResponseError(
                f"answer holds {len(content)} characters, over the bound of {bound} for "
                f"max_tokens = {max_tokens} (answer_chars_per_token = "
                f"{self.config.answer_chars_per_token})"
            )
        return content

    # -- cache ------------------------------------------------------------------------------------
    def _cache_get(self, key: str) -> str | None:
        try:
            return self.cache.get(key)  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            raise _cache_error(exc) from None

    def _cache_put(self, key: str, body: Mapping[str, Any], text: str) -> None:
        try:
            self.cache.put(key, body, text)  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            raise _cache_error(exc) from None


def _open_cache(path: Path) -> ResponseCache:
    """The response cache at ``path``; a file that cannot serve as one raises :class:`LLMCacheError`."""
    try:
        return ResponseCache(path)
    except (sqlite3.Error, ValueError) as exc:  # ValueError: a format version that is no number
        raise _cache_error(exc) from None


def _cache_error(exc: BaseException) -> LLMCacheError:
    """What went wrong with the cache file, and what to do (its role, not its path: the config names that)."""
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    damaged = (
        name in ("SQLITE_NOTADB", "SQLITE_CORRUPT")
        or isinstance(exc, ValueError)
        or (isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError))
    )
    what = "is not an SQLite database or is damaged" if damaged else "cannot be used"
    return LLMCacheError(
        f"the LLM answer cache file {what} ({name}); it holds only cached LLM answers: move it away "
        "or delete it (a new one is made, later answers cost LLM calls again), or choose another file "
        "(--llm-cache, FEDHYDRA_LLM_CACHE)"
    )


def _text(payload: Any) -> str:
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload).decode("utf-8", errors="replace")
    return str(payload)


def _timed_out(url: str, timeout: float, exc: BaseException | None) -> LLMTimeoutError:
    cause = f" ({type(exc).__name__})" if exc is not None else ""
    return LLMTimeoutError(f"no complete answer from {url} within the deadline of timeout_s = {timeout}s{cause}")


def _retry_after(response: Any) -> float | None:
    value = getattr(response, "headers", {}).get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class CallBudget:
    """At most ``max_calls`` network calls (None = unlimited); thread-safe.

    >>> b = CallBudget(1); b.spend(); b.remaining
    0
    """

    def __init__(self, max_calls: int | None):
        self.max_calls = max_calls
        self.used = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int | None:
        return None if self.max_calls is None else self.max_calls - self.used

    def spend(self) -> None:
        with self._lock:
            if self.max_calls is not None and self.used >= self.max_calls:
                raise BudgetExhausted(f"LLM call budget of {self.max_calls} calls is spent")
            self.used += 1

"""A deterministic OpenAI-compatible endpoint that costs no model: for measuring the system apart from the LLM.

Every figure measured against it must say so: its answers are not a language model's. It serves
``POST /v1/chat/completions`` (and ``GET /v1/models``, ``GET /health``) from a threading HTTP server, so
many requests are in flight at once, each held ``delay_s`` seconds (what a remote API's latency looks like)
before the answer. The answer is a pure function of the request: the last user message's words, reordered
and cut by a hash of the whole request (model, messages, sampling parameters, seed), so the same request
always gets the same answer and different seeds get different ones. ``usage.completion_tokens`` counts
the answer's words.

Example:
    >>> import json, urllib.request
    >>> with StubEndpoint(delay_s=0.0) as stub:
    ...     body = {"model": "m", "messages": [{"role": "user", "content": "a b c"}], "seed": 1, "temperature": 0.7}
    ...     req = urllib.request.Request(stub.url + "/chat/completions", json.dumps(body).encode(),
    ...                                  {"Content-Type": "application/json"})
    ...     first = json.load(urllib.request.urlopen(req))["choices"][0]["message"]["content"]
    ...     again = json.load(urllib.request.urlopen(req))["choices"][0]["message"]["content"]
    >>> first == again, set(first.split()) <= {"a", "b", "c"}, stub.served
    (True, True, 2)

Run one on its own: ``python -m lab.llm_stub --port 8099 --delay 0.5``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["StubEndpoint", "stub_answer"]


def stub_answer(body: Mapping[str, Any]) -> str:
    """The deterministic answer to a request body (a permutation of a prefix of the last user message's words)."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).digest()
    messages = body.get("messages") or []
    last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    words = str(last).split()
    if not words:
        return "ok"
    keep = max(1, len(words) - digest[0] % max(1, len(words) // 3 + 1))
    words = words[:keep]
    # a hash-keyed rotation: greedy and seeded requests differ, the same request never does
    shift = digest[1] % len(words) if float(body.get("temperature", 0) or 0) > 0 else 0
    out = words[shift:] + words[:shift]
    limit = int(body.get("max_tokens") or 64)
    return " ".join(out[:limit])


class StubEndpoint:
    """A local, deterministic chat-completions server (see the module docstring); a context manager.

    Attributes:
        url: the API root (``http://127.0.0.1:PORT/v1``).
        served: requests answered so far; ``max_in_flight``: the most requests it held at once.
    """

    def __init__(self, *, delay_s: float = 0.5, host: str = "127.0.0.1", port: int = 0):
        self.delay_s = float(delay_s)
        self.served = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
                elif self.path.rstrip("/").endswith("/health"):
                    self._send(200, {"status": "ok"})
                else:
                    self._send(404, {"error": f"no route {self.path}"})

            def do_POST(self) -> None:
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                except ValueError:
                    self._send(400, {"error": "body is not JSON"})
                    return
                with stub._lock:
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    time.sleep(stub.delay_s)
                    text = stub_answer(body)
                finally:
                    with stub._lock:
                        stub.in_flight -= 1
                        stub.served += 1
                self._send(
                    200,
                    {
                        "object": "chat.completion",
                        "model": body.get("model", "stub"),
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                        ],
                        "usage": {"completion_tokens": len(text.split())},
                    },
                )

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.server = Server((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    """``python -m lab.llm_stub``: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds each request is held")
    args = parser.parse_args()
    with StubEndpoint(delay_s=args.delay, port=args.port) as stub:
        print(f"stub endpoint at {stub.url} ({args.delay}s per request; not a language model)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

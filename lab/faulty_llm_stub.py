"""A local OpenAI-compatible stub that misbehaves on purpose: for testing how faults of the LLM are handled.

The tests of the LLM client and the fault-injection runs (``tests/``, ``scripts/fault_injection.py``) serve it;
nothing in the product does. Its well-behaved sibling, a deterministic endpoint for measuring the system apart from
the LLM, is :class:`lab.llm_stub.StubEndpoint`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["StubLLM"]


class StubLLM:
    """Serves ``/v1/chat/completions`` following a script of behaviours, one per request.

    Behaviours: ``ok`` (echoes the last user message), ``500``, ``503``, ``429`` (with ``Retry-After: 0``),
    ``400``, ``slow`` (sleeps ``slow_s`` before answering), ``badjson``, ``nochoices``, ``drop`` (closes the
    connection without an answer), ``empty`` (an empty message content), ``offlabel`` (a fixed answer with no
    label of any task in it). When the script runs out, it answers ``ok``, or with ``mix`` (behaviour ->
    probability) a behaviour drawn by a generator seeded with ``seed`` (``ok`` for the remaining probability).
    ``counts`` tallies the behaviours served.
    """

    def __init__(self, script=(), slow_s: float = 1.0, mix=None, seed: int = 0):
        self.script = list(script)
        self.slow_s = slow_s
        self.mix = dict(mix or {})
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                stub.headers.append(dict(self.headers))
                action = stub.next_action()
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if action == "slow":
                    time.sleep(stub.slow_s)
                    action = "ok"
                if action in ("500", "503", "429", "400"):
                    payload = b'{"error": "scripted"}'
                    self.send_response(int(action))
                    if action == "429":
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if action == "badjson":
                    payload = b"{not json"
                elif action == "nochoices":
                    payload = json.dumps({"choices": []}).encode()
                elif action in ("empty", "offlabel"):
                    text = "" if action == "empty" else "Sorry, I cannot tell."
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                else:
                    text = f"echo:{body['messages'][-1]['content']}:seed={body.get('seed')}"
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # dropped connections are on purpose
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def next_action(self) -> str:
        with self._lock:
            if self.script:
                action = self.script.pop(0)
            else:
                action, draw = "ok", self._rng.random()
                for name, p in self.mix.items():
                    if draw < p:
                        action = name
                        break
                    draw -= p
            self.counts[action] = self.counts.get(action, 0) + 1
            return action

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

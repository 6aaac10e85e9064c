"""A TCP relay that counts the bytes passing each way: what a SuperNode really sends and receives on the wire.

``scripts/supernodes.py`` puts one in front of the SuperLink for every SuperNode, so the bytes of each device are
counted exactly (HTTP payload over TCP; without TLS, whose records add a little more).

Example:
    >>> import socket, threading
    >>> server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
    >>> def echo():
    ...     conn, _ = server.accept(); conn.sendall(conn.recv(100) * 2); conn.close()
    >>> threading.Thread(target=echo, daemon=True).start()
    >>> relay = Relay(server.getsockname())
    >>> with socket.create_connection(("127.0.0.1", relay.port)) as c:
    ...     c.sendall(b"hello"); reply = c.recv(100)
    >>> import time; time.sleep(0.2)
    >>> reply, relay.counts(), relay.connections
    (b'hellohello', (5, 10), 1)
    >>> relay.close(); server.close()
"""

from __future__ import annotations

import socket
import threading

__all__ = ["Relay"]


class Relay:
    """A TCP relay from a local port to ``target`` (a listening thread, two per connection), counting the bytes
    each way: ``up`` to the target, ``down`` back."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.up = 0
        self.down = 0
        self.connections = 0
        self._lock = threading.Lock()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=30)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "down"), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, way: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                with self._lock:
                    setattr(self, way, getattr(self, way) + len(data))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.up, self.down

    def close(self) -> None:
        self._stop = True
        self.server.close()

"""A TCP proxy on 127.0.0.1 in front of the S3 test server that misbehaves on purpose, as a store
under load does: it resets the first connections, answers 503 SlowDown to the first requests of
the next ones, stalls one response, and refuses one object for ever (docs/reliability.md,
"Flaky storage"). Counters say what it did, so a test checks that the faults really happened.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)
_BODY = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"


@dataclass
class FlakyProxy:
    upstream: str  # http://127.0.0.1:port
    resets: int = 2  # connections reset right after they are accepted
    busy: int = 2  # later connections whose first request gets 503 SlowDown
    stall_match: bytes | None = None  # the first request containing it gets no answer
    refuse_match: bytes | None = None  # every request containing it gets 503
    done: dict[str, int] = field(default_factory=lambda: {"reset": 0, "503": 0, "stall": 0})
    refused_at: list[float] = field(default_factory=list)  # monotonic time of each refusal

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _take(self, what: str, limit: int) -> bool:
        with self._lock:
            if self.done[what] < limit:
                self.done[what] += 1
                return True
            return False

    def _serve(self, client: socket.socket) -> None:
        if self._take("reset", self.resets):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # RST: "connection reset by peer"
            return
        first = client.recv(65536)
        if self._take("503", self.busy) or self._refused(first):
            self._slow_down(client, first)
            return
        u = urlparse(self.upstream)
        server = socket.create_connection((u.hostname, u.port))
        state = {"stall": False}
        threading.Thread(target=self._down, args=(server, client, state), daemon=True).start()
        self._up(client, server, first, state)

    def _refused(self, chunk: bytes) -> bool:
        if self.refuse_match is None or self.refuse_match not in chunk:
            return False
        with self._lock:
            self.refused_at.append(time.monotonic())
        return True

    def _slow_down(self, client: socket.socket, request: bytes) -> None:
        # A store answers HEAD with the headers alone (a body there is a protocol error).
        body = b"" if request.startswith(b"HEAD ") else _BODY
        try:
            client.sendall(SLOW_DOWN % (len(_BODY), body))
        finally:
            client.close()

    def _up(self, client: socket.socket, server: socket.socket, chunk: bytes, state: dict) -> None:
        """Client -> server; a refused request is answered 503, the stalled one marked."""
        try:
            while chunk:
                if self._refused(chunk):
                    self._slow_down(client, chunk)
                    break
                if self.stall_match and self.stall_match in chunk and self._take("stall", 1):
                    state["stall"] = True
                server.sendall(chunk)
                chunk = client.recv(65536)
        except OSError:
            pass
        finally:
            server.close()
            client.close()

    def _down(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        """Server -> client; once a request is stalled, nothing more goes back."""
        try:
            while chunk := server.recv(65536):
                if state["stall"]:
                    while not self._stop.is_set() and client.fileno() != -1:
                        time.sleep(0.05)
                    return
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            client.close()

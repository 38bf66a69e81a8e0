"""A reverse proxy that sends each request to the next backend in turn: a load balancer at its most
unhelpful, so every continuation of a programmatic run lands on the other replica."""

from __future__ import annotations

import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class AlternatingProxy:
    def __init__(self, ports: list[int]) -> None:
        backends = itertools.cycle(f"http://127.0.0.1:{port}" for port in ports)
        lock = threading.Lock()

        class Forward(BaseHTTPRequestHandler):
            def forward(self) -> None:
                with lock:
                    backend = next(backends)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {key: value for key, value in self.headers.items() if key.lower() not in HOP_BY_HOP}
                reply = httpx.request(self.command, backend + self.path, headers=headers, content=body, timeout=120)
                self.send_response(reply.status_code)
                for key, value in reply.headers.items():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-encoding":
                        self.send_header(key, value)
                self.send_header("content-length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            do_GET = do_POST = forward  # noqa: N815 - http.server's handler names

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AlternatingProxy:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()

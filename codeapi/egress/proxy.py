"""The egress proxy process: HTTPS CONNECT tunnels to allowlisted hosts, for sandboxes only.

It runs as a child of the API (``python -m codeapi.egress.proxy``) and never listens on a network
of its own: for each sandbox the API creates a listening socket inside that sandbox's network
namespace and hands it over the control socket (SCM_RIGHTS). A sandbox can therefore reach this
proxy, and through it only what the policy allows; nothing else exists on its network.

Policy for each request: only ``CONNECT name:443``; the name must be allowlisted (checked before
any lookup); the proxy resolves the name itself and connects to an address that
``is_allowed_destination`` accepts (so a name that resolves to a private address, now or on a
second lookup, reaches nothing). Each sandbox has a budget of connections and of bytes.

Control messages (JSON, one per SOCK_SEQPACKET datagram):
  {"op": "open", "job": ID, "max_connections": N, "max_bytes": N} + the listener's fd
  {"op": "close", "job": ID}
Events (one JSON object per line on stdout) say what was allowed and refused, for the API's logs.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from codeapi.egress.addresses import is_allowed_destination
from codeapi.egress.allowlist import Allowlist

HEAD_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
RELAY_CHUNK = 65536
ALLOWED_PORTS = frozenset({443})
CONTROL_MESSAGE_BYTES = 4096


@dataclass
class JobBudget:
    job_id: str
    max_connections: int
    max_bytes: int
    connections: int = 0
    bytes_used: int = 0
    server: asyncio.Server | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def parse_connect(head: bytes) -> tuple[str, int]:
    """The target of a CONNECT request head; anything else is refused."""
    try:
        request_line = head.split(b"\r\n", 1)[0].decode("ascii")
    except UnicodeDecodeError as error:
        raise Refused(400, "request line is not ASCII") from error
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise Refused(400, "malformed request line")
    method, target, _ = parts
    if method != "CONNECT":
        raise Refused(403, "only CONNECT to an allowlisted host on port 443 is allowed")
    host, sep, port_text = target.rpartition(":")
    if not sep or not port_text.isdigit():
        raise Refused(400, "CONNECT target must be host:port")
    return host, int(port_text)


class EgressProxy:
    def __init__(self, allowlist: Allowlist, hosts: dict[str, list[str]]) -> None:
        self.allowlist = allowlist
        self.hosts = hosts  # name -> addresses, consulted before DNS (operators' and tests' overrides)
        self.jobs: dict[str, JobBudget] = {}

    async def resolve(self, host: str, port: int) -> list[str]:
        if host in self.hosts:
            return self.hosts[host]
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def open_job(self, job_id: str, listener: socket.socket, max_connections: int, max_bytes: int) -> None:
        budget = JobBudget(job_id, max_connections, max_bytes)
        listener.setblocking(False)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            budget.tasks.add(task)
            try:
                await self.handle(budget, reader, writer)
            finally:
                budget.tasks.discard(task)

        budget.server = await asyncio.start_server(serve, sock=listener)
        self.jobs[job_id] = budget

    async def close_job(self, job_id: str) -> None:
        budget = self.jobs.pop(job_id, None)
        if budget is None:
            return
        if budget.server is not None:
            budget.server.close()
        for task in list(budget.tasks):
            task.cancel()
        emit("egress.job_closed", job_id=job_id, connections=budget.connections, bytes=budget.bytes_used)

    async def handle(self, budget: JobBudget, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            host, port = parse_connect(head)
            if port not in ALLOWED_PORTS:
                raise Refused(403, f"port {port} is not allowed")
            if not self.allowlist.allows(host):
                raise Refused(403, f"{host} is not on the egress allowlist")
            if budget.connections >= budget.max_connections:
                raise Refused(429, "too many connections for this run")
            budget.connections += 1
            address = await self.pick_address(host, port)
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(address, port), CONNECT_TIMEOUT_S)
            upstream = up_writer
            emit("egress.allowed", job_id=budget.job_id, host=host, address=address, port=port)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(self.relay(budget, reader, up_writer), self.relay(budget, up_reader, writer))
        except Refused as refusal:
            emit("egress.refused", job_id=budget.job_id, status=refusal.status, reason=refusal.reason)
            with contextlib.suppress(OSError):
                body = refusal.reason.encode()
                writer.write(
                    b"HTTP/1.1 %d Refused\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (refusal.status, len(body), body)
                )
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            emit("egress.failed", job_id=budget.job_id, error=type(error).__name__)
        finally:
            for stream in (writer, upstream):
                if stream is not None:
                    stream.close()

    async def pick_address(self, host: str, port: int) -> str:
        try:
            addresses = await self.resolve(host, port)
        except OSError as error:
            raise Refused(502, f"cannot resolve {host}") from error
        allowed = [address for address in addresses if is_allowed_destination(address)]
        if not allowed:
            raise Refused(403, f"{host} resolves only to addresses sandboxes may not reach")
        return allowed[0]

    async def relay(self, budget: JobBudget, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while chunk := await source.read(RELAY_CHUNK):
                budget.bytes_used += len(chunk)
                if budget.bytes_used > budget.max_bytes:
                    emit("egress.byte_limit", job_id=budget.job_id, max_bytes=budget.max_bytes)
                    break
                sink.write(chunk)
                await sink.drain()
        with contextlib.suppress(OSError):
            if sink.can_write_eof():
                sink.write_eof()
            else:
                sink.close()

    async def serve_control(self, control: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        control.setblocking(False)
        while True:
            message, fds = await recv_with_fds(loop, control)
            if not message:
                return  # the API closed its end: exit with it
            request = json.loads(message)
            if request["op"] == "open" and fds:
                listener = socket.socket(fileno=fds[0])
                await self.open_job(
                    str(request["job"]), listener, int(request["max_connections"]), int(request["max_bytes"])
                )
            elif request["op"] == "close":
                await self.close_job(str(request["job"]))


async def recv_with_fds(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> tuple[bytes, list[int]]:
    waiter: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not waiter.done():
            waiter.set_result(None)

    loop.add_reader(sock.fileno(), readable)
    try:
        await waiter
    finally:
        loop.remove_reader(sock.fileno())
    fds = array.array("i")
    message, ancillary, _, _ = sock.recvmsg(CONTROL_MESSAGE_BYTES, socket.CMSG_LEN(4 * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return message, list(fds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--allow", action="append", default=[], help="an extra allowlist entry")
    parser.add_argument("--hosts", default="{}", help="JSON: name -> [address], looked up before DNS")
    args = parser.parse_args()
    proxy = EgressProxy(Allowlist.build(args.allow), json.loads(args.hosts))
    control = socket.socket(fileno=args.control_fd)
    emit("egress.started")
    asyncio.run(proxy.serve_control(control))


if __name__ == "__main__":
    main()

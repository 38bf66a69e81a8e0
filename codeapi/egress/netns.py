"""A sandbox's own network namespace, with the egress proxy as the only thing on it.

The namespace holds a loopback interface and one listening socket, ``127.0.0.1:<port>``, made
by the API before the sandbox starts. The API keeps the listener and hands it to the proxy
process; nsjail then runs inside this namespace (``nsenter --net``) instead of making an empty
one. The namespace belongs to the host's user namespace, so nothing in the sandbox (whose
user namespace is a child of it) can add an address, a route or an interface, or open a raw socket.

Namespaces are per thread: each one is made in a short-lived thread of its own, so the threads
that serve requests never leave the host's network.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import socket
import struct
import threading
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = "16sH14x"
LISTEN_BACKLOG = 64

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.unshare.argtypes = (ctypes.c_int,)


@dataclass
class SandboxNetwork:
    """An open namespace (``namespace_fd``, for nsenter) and the proxy's listener inside it."""

    namespace_fd: int
    listener: socket.socket

    def close(self) -> None:
        self.listener.close()
        os.close(self.namespace_fd)


def bring_loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack(IFREQ, b"lo", 0)
        _, flags = struct.unpack(IFREQ, fcntl.ioctl(probe, SIOCGIFFLAGS, request))
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def create_sandbox_network(port: int) -> SandboxNetwork:
    """A new network namespace with loopback up and a listener on 127.0.0.1:``port`` inside it."""
    made: list[SandboxNetwork] = []
    failures: list[BaseException] = []

    def build() -> None:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"unshare(CLONE_NEWNET): {os.strerror(error)}")
            namespace_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                bring_loopback_up()
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", port))
                listener.listen(LISTEN_BACKLOG)
            except BaseException:
                os.close(namespace_fd)
                raise
            made.append(SandboxNetwork(namespace_fd, listener))
        except BaseException as error:  # handed to the caller's thread
            failures.append(error)

    # The thread ends inside the new namespace; it is never reused for anything else.
    worker = threading.Thread(target=build, name="sandbox-netns", daemon=True)
    worker.start()
    worker.join()
    if failures:
        raise failures[0]
    return made[0]

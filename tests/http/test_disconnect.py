"""A client that goes away mid-run takes its sandbox with it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.apiserver import Replica
from tests.conftest import API_KEY

MARKER = "61.4242"  # a sleep duration nothing else on the machine uses


def marker_processes() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"sleep\0{MARKER}".encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_until(condition: Callable[[], bool], limit_s: float = 60) -> None:
    """Poll rather than time: a loaded machine may start or reap the sandbox late."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server(test_root: Path) -> Iterator[Replica]:
    replica = Replica(test_root / "disconnect")
    replica.wait_ready()
    yield replica
    replica.stop()


def test_client_disconnect_kills_the_sandbox(server: Replica) -> None:
    payload = {"lang": "bash", "code": f"sleep {MARKER}"}
    # Leave once the first keep-alive byte shows the run is under way.
    with httpx.stream("POST", f"{server.url}/exec", json=payload, headers={"x-api-key": API_KEY}) as response:
        chunks = response.iter_raw()  # kept: a discarded iterator would close the stream at once
        assert next(chunks) == b" "
        wait_until(lambda: marker_processes() != [])
    wait_until(lambda: marker_processes() == [])
    assert httpx.get(f"{server.url}/health").status_code == 200

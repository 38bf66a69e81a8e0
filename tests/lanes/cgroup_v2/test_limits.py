"""Every limit enforced by the cgroup-v2 sandbox in the guest, with a neighbour that must stay unharmed.

Limits of the lane's service (guest.SERVICE_ENV): 256 MB, 32 processes+threads, 16 KiB per output
stream, a 64 MB /mnt/data quota; CPU one core per job.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import run

pytestmark = pytest.mark.cgroup_v2_lane

NEIGHBOUR = ("bash", "sleep 1; echo $((6 * 7))")


async def with_neighbour(client: httpx.AsyncClient, lang: str, code: str, **extra: Any) -> dict[str, Any]:
    """Runs the attack and, at the same time in another session, a small program that must succeed."""
    attacked, neighbour = await asyncio.gather(run(client, lang, code, **extra), run(client, *NEIGHBOUR))
    assert neighbour["stdout"] == "42\n", neighbour
    assert neighbour["session_id"] != attacked["session_id"]
    return attacked


async def test_a_memory_bomb_is_killed_at_the_memory_limit_and_its_neighbour_is_unaffected(
    contained: httpx.AsyncClient,
) -> None:
    code = "blocks = []\nwhile True:\n    blocks.append(b'x' * (16 << 20))"
    body = await with_neighbour(contained, "py", code)
    assert "memory limit of 256 MB" in body["stderr"], body


async def test_a_compiled_memory_bomb_is_killed_too(contained: httpx.AsyncClient) -> None:
    code = (
        "#include <stdlib.h>\n#include <stdio.h>\n"
        "int main(void){ for (size_t total = 0;; total += 1 << 20) { char *p = malloc(1 << 20);"
        " for (int i = 0; i < (1 << 20); i += 4096) p[i] = 1;"
        ' if (total > (2UL << 30)) { puts("allocated 2 GB"); return 0; } } }'
    )
    body = await run(contained, "c", code)
    assert "allocated 2 GB" not in body["stdout"]
    assert "memory limit of 256 MB" in body["stderr"], body


async def test_a_fork_bomb_hits_the_process_cap_and_its_neighbour_is_unaffected(contained: httpx.AsyncClient) -> None:
    code = "bomb() { bomb | bomb & }; bomb; sleep 2; echo parent-survived"
    body = await with_neighbour(contained, "bash", code, timeout=10000)
    assert "parent-survived" in body["stdout"] or "TimeoutError" in body["stderr"], body


async def test_python_forks_stop_below_the_process_cap(contained: httpx.AsyncClient) -> None:
    code = (
        "import os, time\nchildren = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
        "            time.sleep(30)\n            os._exit(0)\n        children += 1\n"
        "except BlockingIOError:\n    print('stopped at', children)"
    )
    body = await run(contained, "py", code)
    assert body["stdout"].startswith("stopped at"), body
    assert int(body["stdout"].split()[-1]) < 32


async def test_cpu_hogs_do_not_starve_a_neighbour(contained: httpx.AsyncClient) -> None:
    hog = "for i in 1 2 3 4; do (while :; do :; done) & done; wait"
    body = await with_neighbour(contained, "bash", hog, timeout=8000)
    assert "TimeoutError" in body["stderr"], body


async def test_a_sleeping_run_is_stopped_at_its_wall_time(contained: httpx.AsyncClient) -> None:
    body = await run(contained, "bash", "sleep 600", timeout=3000)
    assert "TimeoutError: Execution exceeded 3 seconds" in body["stderr"], body


async def test_output_is_capped_while_it_streams(contained: httpx.AsyncClient) -> None:
    body = await run(contained, "py", "import sys\nwhile True: sys.stdout.write('x' * 4096)")
    assert len(body["stdout"]) == 16 * 1024
    assert "[stdout truncated at 16 KiB]" in body["stderr"], body["stderr"]


async def test_the_working_directory_stops_at_its_disk_quota(contained: httpx.AsyncClient) -> None:
    code = (
        "written = 0\ntry:\n    for i in range(100):\n        with open(f'fill{i}', 'wb') as f:\n"
        "            f.write(b'x' * (4 << 20))\n            written += 4\n"
        "except OSError as error:\n    print(error.strerror, written)\n"
        "import glob, os\nfor name in glob.glob('fill*'):\n    os.remove(name)"
    )
    body = await run(contained, "py", code)
    assert body["stdout"].startswith("No space left on device"), body
    assert int(body["stdout"].split()[-1]) <= 64

"""The zygote's shape that makes forking it cheap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codeapi.repl import kernel
from tests.repl.conftest import WarmClientFactory, pool_of, wait_until_warm

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def kernel_version() -> tuple[int, int]:
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int(minor)


def anon_huge_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.skipif(
    not THP.exists() or "[never]" in THP.read_text() or kernel_version() < (6, 1),
    reason="MADV_COLLAPSE needs Linux 6.1 with transparent huge pages",
)
async def test_the_zygote_forks_from_huge_pages(warm_client: WarmClientFactory) -> None:
    async with warm_client(SANDBOX_POOL_PY=1) as client:
        await wait_until_warm(client)
        process = pool_of(client).launcher.zygote.process
        assert process is not None
        # Much of the data stack's heap (~145 MB) is in 2 MiB pages, so a fork copies few entries:
        # 62-80 MB of it were on two machines (where a mapping's edges are not 2 MiB-aligned, small
        # pages stay); none without the collapse, the kernel not being asked for huge pages otherwise.
        assert anon_huge_bytes(process.pid) >= 16 * kernel.HUGE_PAGE_BYTES

"""Session fixtures of the container lane: one compose stack for the whole module, torn down at the end."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bench.backends import free_port
from tests.lanes.container.stack import (
    ComposeStack,
    ThisHost,
    ensure_base_image,
    ensure_dockerd,
    remove_stale_stacks,
    require_tools,
)

# Small limits so the bombs and fills hit them quickly; the container itself has none, so only the job
# cgroups and quotas bound them.
LANE_SETTINGS = {
    "MAX_MEMORY_MB": "256",
    "MAX_PROCESSES": "64",
    "MAX_EXECUTION_TIME": "60",
    "MAX_OUTPUT_KB": "16",
    "SANDBOX_WORKDIR_SIZE_MB": "64",
    "LOG_LEVEL": "WARNING",
}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    host = ThisHost(tmp_path_factory.mktemp("container-lane"))
    require_tools()
    ensure_dockerd()
    ensure_base_image()
    remove_stale_stacks(host)
    port = free_port()
    compose = ComposeStack(host, LANE_SETTINGS, published=f"127.0.0.1:{port}", url=f"http://127.0.0.1:{port}")
    compose.build()
    try:
        compose.up()
        yield compose
    finally:
        compose.down()


@pytest.fixture(scope="session")
def stack_api(stack: ComposeStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, headers={"x-api-key": stack.api_key}, timeout=180) as client:
        yield client

"""The container lane's stack: the README's Deployment run on this host, one stack for the whole lane
(tests/lanes/container), taken down when the lane ends."""

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

REQUEST_TIMEOUT_S = 180
LaneReport = list[str]  # lines printed at the end of the run (what the fault tests measured)
REPORT = pytest.StashKey[LaneReport]()


@pytest.fixture(scope="session")
def lane_report(request: pytest.FixtureRequest) -> LaneReport:
    return request.config.stash.setdefault(REPORT, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if lines := config.stash.get(REPORT, []):
        terminalreporter.section("container lane: measured")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    """`.env.example` with only the documented edits: the limits checked are its defaults."""
    host = ThisHost(tmp_path_factory.mktemp("container-lane"))
    require_tools()
    ensure_dockerd()
    ensure_base_image()
    remove_stale_stacks(host)
    port = free_port()
    # Published as the README's stack publishes it (every address of the host, behind the random key).
    compose = ComposeStack(host, port, url=f"http://127.0.0.1:{port}")
    compose.build()
    try:
        compose.up()
        yield compose
    finally:
        compose.down()


def api_client(stack: ComposeStack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.url, headers={"x-api-key": stack.api_key}, timeout=REQUEST_TIMEOUT_S, verify=stack.verify
    )


@pytest.fixture(scope="package")
def stack_api(stack: ComposeStack) -> Iterator[httpx.Client]:
    with api_client(stack) as client:
        yield client

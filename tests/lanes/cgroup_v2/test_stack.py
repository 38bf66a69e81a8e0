"""The compose stack on cgroup v2: the images the host built (as for the container lane) loaded into the
guest's Docker, `docker compose up` there with Redis and SeaweedFS, and the flow of
tests/lanes/compose_flow.py driven from the host, the container's own cgroup bounding every sandbox.

Runs last in the lane (file order): it stops the service the other modules use, as the guest's two
emulated CPUs serve one API at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bench.backends import free_port
from tests.lanes import compose_flow
from tests.lanes.cgroup_v2.guest import COMPOSE_PORT, Guest, GuestDocker
from tests.lanes.compose_flow import *  # noqa: F403 (the flow's tests, collected with this module's fixtures)
from tests.lanes.container.stack import (
    API_IMAGE,
    ComposeStack,
    ThisHost,
    ensure_base_image,
    ensure_dockerd,
    go_cache_seed,
    require_tools,
    seed_go_cache,
)

pytestmark = pytest.mark.cgroup_v2_lane

IMAGES = (API_IMAGE, "codeapi-stores:latest")
# Everything in the guest is 10-30x slower: the API's start (host preparation, the warm Python path)
# takes minutes, and so does a compile.
START_TIMEOUT_S = 1200
REQUEST_TIMEOUT_S = 600
# Beside the documented edits of .env.example: small limits, so the bombs and fills end quickly under
# emulation; sandbox uids apart from the native service's (SANDBOX_UID 1001), whose leftovers check
# counts those.
GUEST_SETTINGS = {
    "MAX_MEMORY_MB": "256",
    "MAX_PROCESSES": "64",
    "MAX_EXECUTION_TIME": "300",
    "MAX_OUTPUT_KB": "16",
    "SANDBOX_WORKDIR_SIZE_MB": "64",
    "SANDBOX_UID": "30001",
    "LOG_LEVEL": "WARNING",
}


@pytest.fixture(scope="module")
def stack(guest: Guest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    require_tools()
    ensure_dockerd()
    ensure_base_image()
    # Never started: it builds, and warms the Go cache in one container.
    built = ComposeStack(ThisHost(tmp_path_factory.mktemp("v2-build")), free_port(), url="", name="v2-build")
    built.build()
    try:
        seed = go_cache_seed(built)
    finally:
        built.down()
    guest.stop_service()
    docker = GuestDocker(guest)
    docker.load_images(*IMAGES, seed)
    compose = ComposeStack(docker, COMPOSE_PORT, url=guest.api_url(COMPOSE_PORT), settings=GUEST_SETTINGS)
    seed_go_cache(compose, seed)
    try:
        compose.up(START_TIMEOUT_S)
        yield compose
    finally:
        compose.down()


@pytest.fixture(scope="module")
def stack_api(stack: ComposeStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, headers={"x-api-key": stack.api_key}, timeout=REQUEST_TIMEOUT_S) as client:
        yield client


# Last: it takes the stack down.
test_compose_down_leaves_no_container_network_or_volume = (
    compose_flow.test_compose_down_leaves_no_container_network_or_volume
)

"""The container lane, last: the same stack with HTTPS turned on as the configuration guide's "HTTPS Setup"
says (a certificate made into ./ssl, ENABLE_HTTPS and the SSL_* lines in `.env`, `docker compose up -d`).
LibreChat's part of the flow (a run, an upload read by a run, a file downloaded, state across calls) then
runs against https:// trusting that certificate, and `docker compose down` leaves nothing. The images,
Redis, SeaweedFS and the Go cache are the ones test_compose.py's stack already has."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.lanes import compose_flow
from tests.lanes.container.conftest import api_client
from tests.lanes.container.stack import ComposeStack

pytestmark = pytest.mark.container_lane


@pytest.fixture(scope="module")
def stack_api(stack: ComposeStack) -> Iterator[httpx.Client]:
    """The API over HTTPS, for this module's tests (the lane's HTTP client is no longer used)."""
    stack.enable_https()
    with api_client(stack) as client:
        yield client


def test_the_api_answers_only_over_https(stack: ComposeStack, stack_api: httpx.Client) -> None:
    assert stack_api.get("/health").status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get("http://" + stack.url.removeprefix("https://") + "/health", timeout=10)


# The flow's tests, collected here with this module's client, in this order; the last takes the stack down.
test_an_uploaded_file_is_read_by_the_sandbox = compose_flow.test_an_uploaded_file_is_read_by_the_sandbox
test_a_generated_png_is_downloaded = compose_flow.test_a_generated_png_is_downloaded
test_python_state_survives_from_one_call_to_the_next = compose_flow.test_python_state_survives_from_one_call_to_the_next
test_compose_down_leaves_no_container_network_or_volume = (
    compose_flow.test_compose_down_leaves_no_container_network_or_volume
)

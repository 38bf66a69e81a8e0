"""The container lane, first: the README's Deployment on this host's Docker (cgroup v1) serves the flow of
tests/lanes/compose_flow.py; then its API is killed while Python sessions keep their sandboxes, once with
its container (`docker kill`) and once alone (as an out-of-memory kill ends it), and each time the
container exits, comes back and continues the sessions. test_https.py runs next (file order)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from codeapi.auth.keys import fingerprint
from tests.lanes.compose_flow import *  # noqa: F403 (the flow's tests, collected with this module's fixtures)
from tests.lanes.compose_flow import run
from tests.lanes.container.stack import ComposeStack, ContainerState, sh

pytestmark = pytest.mark.container_lane

KEPT_SESSIONS = 3
EXIT_BOUND_S = 60  # a killed container is gone within seconds; the bound only tells "never" apart
CGROUP_ROOT = Path("/sys/fs/cgroup")


def keep_python_sessions(stack_api: httpx.Client) -> dict[str, str]:
    """Python calls in sessions of their own, each leaving a variable; each session keeps its sandbox."""
    kept = {}
    for _ in range(KEPT_SESSIONS):
        token = secrets.token_hex(8)
        body = run(stack_api, "py", f"kept = {token!r}")
        assert body["stderr"] == ""
        kept[body["session_id"]] = token
    return kept


def assert_sessions_continue(stack_api: httpx.Client, kept: dict[str, str]) -> None:
    """Each session reads its variable back: its state was in Redis, its sandbox died with the API."""
    for session_id, token in kept.items():
        body = run(stack_api, "py", "print(kept)", session_id=session_id)
        assert body["stdout"] == f"{token}\n", body["stderr"]


def thaw_frozen_cgroups(container_id: str) -> list[str]:
    """Thaws the container's frozen cgroups (v1 freezer.state, v2 cgroup.freeze), parents first, and
    names them: a frozen process cannot die, so they hold a killed container up. Thawed, it exits, and
    the lane can take its stack down."""
    thawed = []
    for top, _, files in os.walk(CGROUP_ROOT):
        if container_id not in top:
            continue
        for name, frozen, thaw in (("freezer.state", "FROZEN", "THAWED"), ("cgroup.freeze", "1", "0")):
            if name in files and (Path(top) / name).read_text().strip() == frozen:
                (Path(top) / name).write_text(thaw)
                thawed.append(top)
    return thawed


def poll_api_container(stack: ComposeStack, done: Callable[[ContainerState], bool]) -> ContainerState:
    """The API container's state once it is ``done``, or at the bound."""
    deadline = time.monotonic() + EXIT_BOUND_S
    now = stack.api_state()
    while not done(now) and time.monotonic() < deadline:
        time.sleep(1)
        now = stack.api_state()
    return now


def await_api_container(
    stack: ComposeStack, before: ContainerState, done: Callable[[ContainerState], bool], after: str
) -> None:
    """Until the API container is ``done``. Still the run it was at the bound, it is stuck: its frozen
    cgroups are thawed, so that it exits and the lane can go on, and the test fails naming them."""
    now = poll_api_container(stack, done)
    if now.same_run(before):
        thawed = thaw_frozen_cgroups(before.id)
        poll_api_container(stack, lambda state: not state.same_run(before))
        pytest.fail(f"the API container still ran {EXIT_BOUND_S} s after {after}; frozen (thawed): {thawed}")
    assert done(now), now


@pytest.fixture
def serving(stack: ComposeStack) -> None:
    """The stack serving, whatever an earlier test left: `up -d` starts an API container that was killed."""
    stack.compose("up", "-d")
    stack.wait_serving()


@pytest.mark.usefixtures("serving")
def test_a_killed_api_container_exits_and_continues_its_sessions_after_up(
    stack: ComposeStack, stack_api: httpx.Client
) -> None:
    kept = keep_python_sessions(stack_api)
    before = stack.api_state()
    killed = subprocess.run(["docker", "kill", before.id], capture_output=True, text=True, timeout=300)  # SIGKILL
    await_api_container(stack, before, lambda now: not now.same_run(before), f"docker kill ({killed.stderr.strip()})")
    stack.compose("up", "-d")
    stack.wait_serving()
    assert_sessions_continue(stack_api, kept)


@pytest.mark.usefixtures("serving")
def test_an_api_process_killed_alone_is_restarted_by_its_policy(stack: ComposeStack, stack_api: httpx.Client) -> None:
    """SIGKILL to the container's main process only, as the kernel's out-of-memory killer ends it; the
    container exits with it, and `restart: unless-stopped` starts it again."""
    kept = keep_python_sessions(stack_api)
    before = stack.api_state()
    os.kill(before.pid, signal.SIGKILL)
    await_api_container(
        stack, before, lambda now: now.status == "running" and now.started_at != before.started_at, "kill -9"
    )
    stack.wait_serving()
    assert_sessions_continue(stack_api, kept)


def test_the_api_sees_the_client_not_the_balancer(stack: ComposeStack) -> None:
    """Behind the balancer, the API's per-client accounting (the authentication-failure lockout, the
    logs' client_ip) keys on the client's address: the one the balancer saw (here the Docker network's
    gateway, which the published port forwards from), never the balancer's own nor an X-Forwarded-For
    the client wrote."""
    marker = secrets.token_hex(8)
    refused = httpx.get(
        f"{stack.url}/files/{marker}", headers={"x-api-key": f"wrong-{marker}", "X-Forwarded-For": "192.0.2.7"},
        timeout=30, verify=stack.verify,
    )  # fmt: skip
    assert refused.status_code == 401
    balancer = stack.compose("ps", "--quiet", "balancer").stdout.strip()
    fields = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.Gateway}}{{end}}"
    address, gateway = sh(["docker", "inspect", "--format", fields, balancer]).stdout.split()
    key = fingerprint(f"wrong-{marker}")
    logged = [line for line in stack.compose("logs", "--no-color", "api").stdout.splitlines() if key in line]
    assert logged, "the refusal was not logged"
    assert f'"client_ip": "{gateway}"' in logged[-1], (address, gateway, logged[-1])

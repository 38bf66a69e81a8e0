"""What a compose stack must do wherever it runs: the image of the Dockerfile, run by docker-compose.yml
with Redis and SeaweedFS, serves LibreChat's flow, bounds every sandbox, and `docker compose down` leaves
nothing behind. Collected by each lane that imports these tests (the host's container lane, the stack in
the cgroup-v2 guest), with its own fixtures: ``stack`` (a ComposeStack that is up) and ``stack_api``. The
limits checked are the ones the stack's `.env` sets (the container lane: `.env.example`'s defaults)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from codeapi.languages import LANGUAGES
from tests.lanes.container.stack import ComposeStack

# What a lane collects with `from tests.lanes.compose_flow import *`, in this order. A lane runs
# test_compose_down_leaves_no_container_network_or_volume last, after tests of its own.
__all__ = [
    "test_hello_world_runs_in_every_language",
    "test_an_uploaded_file_is_read_by_the_sandbox",
    "test_a_generated_png_is_downloaded",
    "test_python_state_survives_from_one_call_to_the_next",
    "test_a_memory_bomb_is_killed_while_its_neighbour_finishes",
    "test_a_fork_bomb_is_contained_and_the_service_stays_healthy",
    "test_a_run_is_stopped_at_its_wall_time",
    "test_output_is_capped_while_it_streams",
    "test_the_working_directory_stops_at_its_disk_quota",
    "test_files_count_against_the_memory_limit",
    "test_a_sandbox_runs_in_a_cgroup_inside_the_api_containers_own",
]


def run(stack_api: httpx.Client, lang: str, code: str, **extra: Any) -> dict[str, Any]:
    response = stack_api.post("/exec", json={"lang": lang, "code": code, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("spec", LANGUAGES, ids=[spec.id for spec in LANGUAGES])
def test_hello_world_runs_in_every_language(stack_api: httpx.Client, spec) -> None:  # type: ignore[no-untyped-def]
    program, expected = spec.hello
    body = run(stack_api, spec.id, program)
    assert body["stdout"] == expected, body["stderr"]


def test_an_uploaded_file_is_read_by_the_sandbox(stack_api: httpx.Client) -> None:
    response = stack_api.post(
        "/upload", files={"file": ("notes.txt", b"kept in S3")}, data={"kind": "user", "id": "u1"}
    )
    assert response.status_code == 200, response.text
    uploaded = response.json()
    ref = {
        "id": uploaded["files"][0]["fileId"],
        "storage_session_id": uploaded["storage_session_id"],
        "name": "notes.txt",
    }
    body = run(stack_api, "py", "print(open('notes.txt').read().upper())", files=[ref])
    assert body["stdout"] == "KEPT IN S3\n", body["stderr"]


def test_a_generated_png_is_downloaded(stack_api: httpx.Client) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.savefig('plot.png')\nprint('saved')"
    body = run(stack_api, "py", code)
    assert body["stdout"] == "saved\n", body["stderr"]
    plot = next(item for item in body["files"] if item["name"] == "plot.png")
    download = stack_api.get(f"/download/{body['session_id']}/{plot['id']}")
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert download.content.startswith(b"\x89PNG")


def test_python_state_survives_from_one_call_to_the_next(stack_api: httpx.Client) -> None:
    first = run(stack_api, "py", "import numpy as np\ncounter = 41\ndef bump(n):\n    return n + 1")
    assert first["stderr"] == ""
    second = run(stack_api, "py", "print(bump(counter), np.arange(3).sum())", session_id=first["session_id"])
    assert second["stdout"] == "42 3\n", second["stderr"]


def test_a_memory_bomb_is_killed_while_its_neighbour_finishes(stack_api: httpx.Client, stack: ComposeStack) -> None:
    bomb = "x = bytearray(2 * 1024 * 1024 * 1024)\nprint('allocated')"
    neighbour = "import time\ntotal = sum(range(10**6))\ntime.sleep(2)\nprint('neighbour', total)"
    with ThreadPoolExecutor(max_workers=2) as pool:
        bombed = pool.submit(run, stack_api, "py", bomb)
        calm = pool.submit(run, stack_api, "py", neighbour)
        bomb_body, calm_body = bombed.result(), calm.result()
    assert "allocated" not in bomb_body["stdout"]
    limit = f"memory limit of {stack.settings['MAX_MEMORY_MB']} MB"
    assert limit in bomb_body["stderr"] or "MemoryError" in bomb_body["stderr"]
    assert calm_body["stdout"] == f"neighbour {sum(range(10**6))}\n", calm_body["stderr"]


def test_a_fork_bomb_is_contained_and_the_service_stays_healthy(stack_api: httpx.Client) -> None:
    body = run(stack_api, "bash", "bomb() { bomb | bomb & }; bomb; sleep 1; echo survived")
    assert "fork" in body["stderr"].lower() or "Resource temporarily unavailable" in body["stderr"]
    assert run(stack_api, "bash", "echo healthy")["stdout"] == "healthy\n"


def test_a_run_is_stopped_at_its_wall_time(stack_api: httpx.Client) -> None:
    body = run(stack_api, "bash", "sleep 600", timeout=3000)
    assert "TimeoutError: Execution exceeded 3 seconds" in body["stderr"], body


def test_output_is_capped_while_it_streams(stack_api: httpx.Client, stack: ComposeStack) -> None:
    cap_kb = int(stack.settings["MAX_OUTPUT_KB"])
    body = run(stack_api, "py", "import sys\nwhile True: sys.stdout.write('x' * 4096)")
    assert len(body["stdout"]) == cap_kb * 1024
    assert f"[stdout truncated at {cap_kb} KiB]" in body["stderr"], body["stderr"]


def fill_working_directory(stack_api: httpx.Client, size_mb: int) -> dict[str, Any]:
    """A run writing files of 4 MB into its working directory, past ``size_mb``, until an error stops it."""
    code = (
        f"written = 0\ntry:\n    for i in range({size_mb // 4 + 2}):\n        with open(f'fill{{i}}', 'wb') as f:\n"
        "            f.write(b'x' * (4 << 20))\n            written += 4\n"
        "except OSError as error:\n    print(error.strerror, written)\n"
        "import glob, os\nfor name in glob.glob('fill*'):\n    os.remove(name)"
    )
    return run(stack_api, "py", code)


def test_the_working_directory_stops_at_its_disk_quota(stack_api: httpx.Client, stack: ComposeStack) -> None:
    quota_mb = int(stack.settings["SANDBOX_WORKDIR_SIZE_MB"])
    if quota_mb >= int(stack.settings["MAX_MEMORY_MB"]):
        pytest.skip("the memory limit stops the writer first (test_files_count_against_the_memory_limit)")
    body = fill_working_directory(stack_api, quota_mb)
    assert body["stdout"].startswith("No space left on device"), body
    assert int(body["stdout"].split()[-1]) <= quota_mb


def test_files_count_against_the_memory_limit(stack_api: httpx.Client, stack: ComposeStack) -> None:
    """The working directory is a tmpfs, held in the job's memory: with a quota at or above MAX_MEMORY_MB
    (`.env.example`'s defaults: 1024 and 512) the memory limit ends a run that fills it."""
    memory_mb = int(stack.settings["MAX_MEMORY_MB"])
    quota_mb = int(stack.settings["SANDBOX_WORKDIR_SIZE_MB"])
    if quota_mb < memory_mb:
        pytest.skip("the quota stops the writer first (test_the_working_directory_stops_at_its_disk_quota)")
    body = fill_working_directory(stack_api, quota_mb)
    assert f"memory limit of {memory_mb} MB" in body["stderr"], body["stdout"]


def test_a_sandbox_runs_in_a_cgroup_inside_the_api_containers_own(stack_api: httpx.Client, stack: ComposeStack) -> None:
    """So the container's own limits (mem_limit, pids_limit, cpus) bound every sandbox as well."""
    container_id = stack.compose("ps", "--quiet", "api").stdout.strip()
    with ThreadPoolExecutor(max_workers=1) as pool:
        job = pool.submit(run, stack_api, "bash", "sleep 17.31")
        placements = stack.cgroups_of(b"sleep\x0017.31\x00", timeout_s=15)
        job.result()
    assert placements, "the sandboxed sleep was never seen on the docker host"
    assert all(container_id in line for line in placements), placements


def test_compose_down_leaves_no_container_network_or_volume(stack: ComposeStack) -> None:
    assert any(stack.leftovers().values())  # the stack is there before
    stack.down()
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}

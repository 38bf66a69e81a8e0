"""The LibreChat flow against the service running natively on cgroup v2: every language, files both
ways, a generated image, and Python state kept across calls (the warm path)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from codeapi.languages import LANGUAGES
from tests.conftest import run, upload

pytestmark = pytest.mark.cgroup_v2_lane

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("spec", LANGUAGES, ids=[spec.id for spec in LANGUAGES])
async def test_hello_world_runs_in_every_language(contained: httpx.AsyncClient, spec: Any) -> None:
    program, expected = spec.hello
    body = await run(contained, spec.id, program)
    assert body["stdout"] == expected, body["stderr"]


async def test_an_uploaded_file_is_read_by_a_run(contained: httpx.AsyncClient) -> None:
    uploaded = await upload(contained, "notes.txt", b"cgroup v2 guest", kind="user", id="u1")
    ref = {
        "id": uploaded["files"][0]["fileId"],
        "name": "notes.txt",
        "storage_session_id": uploaded["storage_session_id"],
        "kind": "user",
    }
    body = await run(contained, "py", "print(open('notes.txt').read().upper())", files=[ref])
    assert body["stdout"] == "CGROUP V2 GUEST\n", body["stderr"]


async def test_a_generated_png_is_downloaded(contained: httpx.AsyncClient) -> None:
    code = (
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\nplt.savefig('plot.png')\nprint('saved')"
    )
    body = await run(contained, "py", code)
    assert body["stdout"] == "saved\n", body["stderr"]
    outputs = {item["name"]: item["id"] for item in body["files"]}
    assert list(outputs) == ["plot.png"], body
    download = await contained.get(f"/download/{body['session_id']}/{outputs['plot.png']}")
    assert download.status_code == 200
    assert download.content.startswith(PNG_MAGIC)


async def test_python_state_is_kept_across_two_calls(contained: httpx.AsyncClient) -> None:
    first = await run(contained, "py", "import os\ncounter = 41\nprint(os.getpid())")
    assert first["stdout"] != "1\n", "Python ran one-shot: the warm path (zygote) is not up"
    second = await run(contained, "py", "counter += 1\nprint(counter)", session_id=first["session_id"])
    assert second["stdout"] == "42\n", second["stderr"]

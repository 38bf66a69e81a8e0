"""What /exec says about the files of a run beyond ``files`` (contract §9.3): ``deleted_files``, the
inputs it removed, and ``artifact_delivery`` when some of its outputs could not be stored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import run, upload
from tests.http.test_files import upload_read_only_skill


async def staged(client: httpx.AsyncClient, *names: str) -> list[dict[str, Any]]:
    """One upload per name, as the file references LibreChat sends for them."""
    refs = []
    for name in names:
        uploaded = await upload(client, name, f"{name}\n".encode())
        refs.append({"id": uploaded["files"][0]["fileId"], "storage_session_id": uploaded["storage_session_id"]})
        refs[-1]["name"] = name
    return refs


@pytest.mark.parametrize("lang", ["py", "bash"])
async def test_inputs_the_run_removed_are_listed_by_name(client: httpx.AsyncClient, lang: str) -> None:
    refs = await staged(client, "keep.csv", "gone.csv", "reports/q1.csv", "swapped.txt")
    code = {
        "py": "import os\nos.remove('gone.csv')\nos.remove('reports/q1.csv')\nos.remove('swapped.txt')\n"
        "os.mkdir('swapped.txt')\nopen('swapped.txt/inside.txt', 'w').write('x')",
        "bash": "rm gone.csv reports/q1.csv swapped.txt && mkdir swapped.txt && echo x > swapped.txt/inside.txt",
    }[lang]
    body = await run(client, lang, code, files=refs)
    assert sorted(body["deleted_files"]) == ["gone.csv", "reports/q1.csv", "swapped.txt"]
    assert [item["name"] for item in body["files"]] == ["swapped.txt/inside.txt"]
    assert "artifact_delivery" not in body


async def test_a_run_that_removes_nothing_lists_nothing(client: httpx.AsyncClient) -> None:
    body = await run(client, "bash", "cat keep.csv", files=await staged(client, "keep.csv"))
    assert body["deleted_files"] == []


async def test_a_removed_read_only_input_is_not_deleted(client: httpx.AsyncClient) -> None:
    """A run's changes to a read-only input (a skill file) are dropped; removing it is one of them."""
    ref = await upload_read_only_skill(client)
    body = await run(client, "bash", "rm skills/demo/SKILL.md && echo removed", files=[ref])
    assert body["stdout"] == "removed\n"
    assert body["deleted_files"] == []


@pytest.mark.parametrize("lang", ["py", "bash"])
async def test_outputs_that_could_not_be_stored_are_counted(client: httpx.AsyncClient, lang: str) -> None:
    code = {
        "py": "import os\nopen('report.txt', 'w').write('ok')\nos.mkfifo('stream.pipe')",
        "bash": "echo ok > report.txt; mkfifo stream.pipe",
    }[lang]
    body = await run(client, lang, code)
    assert [item["name"] for item in body["files"]] == ["report.txt"]
    assert body["artifact_delivery"] == {
        "code": "artifact_delivery_failed",
        "status": "partial",
        "attempted": 2,
        "delivered": 1,
        "failed": 1,
    }
    assert "Output file not saved: stream.pipe (not a regular file)" in body["stderr"]


async def test_a_run_whose_outputs_all_failed_says_failed(client: httpx.AsyncClient) -> None:
    body = await run(client, "bash", "mkfifo a.pipe b.pipe; ln -s /etc/passwd link; ln a.pipe hard.pipe 2>/dev/null; :")
    assert body["files"] == []
    delivery = body["artifact_delivery"]
    assert (delivery["status"], delivery["delivered"]) == ("failed", 0)
    assert delivery["attempted"] == delivery["failed"] == body["stderr"].count("Output file not saved")


async def test_outputs_over_the_per_run_limit_are_counted(client: httpx.AsyncClient) -> None:
    body = await run(client, "bash", "for i in $(seq 1 12); do echo $i > out$i.txt; done")
    assert len(body["files"]) == 10
    assert body["artifact_delivery"] == {
        "code": "artifact_delivery_failed",
        "status": "partial",
        "attempted": 12,
        "delivered": 10,
        "failed": 2,
    }

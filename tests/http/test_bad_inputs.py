"""Requests whose text or inputs cannot be run answer 4xx through the real app, never 500."""

from __future__ import annotations

import json
import stat
import uuid
from pathlib import Path

import httpx
import pytest

from codeapi.execution.program import MAX_ARG_BYTES, MAX_ARGS_BYTES
from codeapi.http.routes.exec import MAX_CODE_BYTES
from tests.conftest import API_KEY, ClientFactory, run, running_client, upload
from tests.conftest import test_settings as settings_for


async def test_a_nul_byte_in_args_is_400_on_args(client: httpx.AsyncClient) -> None:
    response = await client.post("/exec", json={"lang": "bash", "code": "echo $1", "args": ["a\x00b"]})
    assert response.status_code == 400, response.text
    assert response.json()["details"][0]["field"] == "args"
    compiled = await client.post("/exec", json={"lang": "c", "code": "int main(void){return 0;}", "args": ["\x00"]})
    assert compiled.status_code == 400, compiled.text


async def test_a_lone_surrogate_in_code_is_400_on_code(client: httpx.AsyncClient) -> None:
    for lang in ("py", "bash"):
        raw = '{"lang": "' + lang + '", "code": "print(1) # \\ud800"}'
        response = await client.post("/exec", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["details"][0]["field"] == "code"


async def test_inputs_larger_than_the_job_quota_are_413(make_client: ClientFactory) -> None:
    async with make_client(SANDBOX_WORKDIR_SIZE_MB=16) as small:
        uploaded = await upload(small, "big.bin", b"x" * (17 * 1024 * 1024))
        ref = {
            "id": uploaded["files"][0]["fileId"],
            "storage_session_id": uploaded["storage_session_id"],
            "name": "big.bin",
        }
        response = await small.post("/exec", json={"lang": "bash", "code": "ls -l", "files": [ref]})
        assert response.status_code == 413, response.text
        assert response.json()["error_type"] == "validation"
        # The app is fine afterwards.
        healthy = await small.post("/exec", json={"lang": "bash", "code": "echo ok"})
        assert healthy.json()["stdout"] == "ok\n"


async def test_the_embedded_stores_are_private_to_the_service(test_root: Path) -> None:
    root = test_root / f"perm-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    root.chmod(0o711)
    async with running_client(settings_for(root), {"x-api-key": API_KEY}) as client:
        await upload(client, "secret.txt", b"private")
        body = (await client.post("/exec", json={"lang": "bash", "code": "echo out > out.txt"})).json()
        assert [item["name"] for item in body["files"]] == ["out.txt"]
        data = root / "data"
        assert stat.S_IMODE((data / "codeapi.db").stat().st_mode) == 0o600
        blobs = data / "blobs"
        paths = [blobs, *blobs.rglob("*")]
        assert any(path.is_file() for path in paths)
        for path in paths:
            assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
        for wal in data.glob("codeapi.db-*"):
            assert stat.S_IMODE(wal.stat().st_mode) & 0o077 == 0, wal


async def test_a_bash_argument_up_to_the_cap_reaches_the_program(client: httpx.AsyncClient) -> None:
    body = await run(client, "bash", 'echo "${#1} $#"', args=["x" * MAX_ARG_BYTES])
    assert body["stdout"] == f"{MAX_ARG_BYTES} 1\n"


@pytest.mark.parametrize(
    "args",
    [["x" * 200_000], ["x" * 100_000] * 3, ["é" * (MAX_ARG_BYTES // 2 + 1)], [""] * (MAX_ARGS_BYTES // 9 + 1)],
    ids=["one-200-kb", "three-100-kb", "non-ascii-over", "many-empty"],
)
async def test_arguments_over_the_caps_are_413_naming_the_field(client: httpx.AsyncClient, args: list[str]) -> None:
    response = await client.post("/exec", json={"lang": "bash", "code": 'echo "$#"', "args": args})
    assert response.status_code == 413
    assert response.json()["details"][0]["field"] == "args"


async def test_code_at_the_cap_in_json_escapes_is_accepted(client: httpx.AsyncClient) -> None:
    """1 MiB of code written with 6-byte \\u escapes (control characters, or any non-ASCII with
    json.dumps' default) is 6 MiB of JSON: still a program under the cap."""
    comment = "# " + "\x01" * (MAX_CODE_BYTES - 64) + "\n"
    payload = json.dumps({"lang": "bash", "code": comment + "echo ok"})
    assert len(payload) > 6 * MAX_CODE_BYTES - 1024
    response = await client.post("/exec", content=payload, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["stdout"] == "ok\n"

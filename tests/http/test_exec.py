"""POST /exec through the real app and the real sandbox."""

from __future__ import annotations

import httpx

from codeapi.sessions.ids import is_id
from tests.conftest import run, upload


async def test_exec_returns_stdout_and_a_nanoid_session(client: httpx.AsyncClient) -> None:
    body = await run(client, "py", "print('hi')")
    assert body["stdout"] == "hi\n"
    assert body["stderr"] == ""
    assert body["files"] == []
    assert is_id(body["session_id"])


async def test_exec_is_served_under_v1_prefix_too(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/exec", json={"lang": "bash", "code": "echo v1"})
    assert response.status_code == 200
    assert response.json()["stdout"] == "v1\n"


async def test_exec_ignores_unknown_fields_sent_by_librechat(client: httpx.AsyncClient) -> None:
    body = await run(
        client,
        "py",
        "print(2 + 2)",
        codeSessionKey="execute_code",
        runtime_session_hint="x",
        workspace_instance_id="y",
        tools=[],
        user_id="665f1c2e9b1d8a0012345678",
        files=[],
    )
    assert body["stdout"] == "4\n"


async def test_exec_reports_code_errors_as_200_with_stderr(client: httpx.AsyncClient) -> None:
    body = await run(client, "py", "raise ValueError('boom')")
    assert "ValueError: boom" in body["stderr"]


async def test_exec_reports_nonzero_exit_as_200(client: httpx.AsyncClient) -> None:
    body = await run(client, "bash", "echo out; echo err >&2; exit 3")
    assert body["stdout"] == "out\n"
    assert "err" in body["stderr"]


async def test_exec_reports_compile_errors_in_stderr(client: httpx.AsyncClient) -> None:
    body = await run(client, "c", "int main( { return 0; }")
    assert "error" in body["stderr"]
    assert body["stdout"] == ""


async def test_exec_passes_args(client: httpx.AsyncClient) -> None:
    body = await run(client, "py", "import sys; print(sys.argv[1:])", args=["a", "b c"])
    assert body["stdout"] == "['a', 'b c']\n"
    single = await run(client, "bash", 'echo "$1"', args="solo")
    assert single["stdout"] == "solo\n"


async def test_exec_lang_is_case_insensitive(client: httpx.AsyncClient) -> None:
    body = await run(client, "PY", "print('upper')")
    assert body["stdout"] == "upper\n"


async def test_exec_mounts_uploaded_file_by_storage_session_id(client: httpx.AsyncClient) -> None:
    uploaded = await upload(client, "data.csv", b"a,b\n1,2\n", kind="user", id="u1")
    ref = {
        "id": uploaded["files"][0]["fileId"],
        "resource_id": "u1",
        "name": "data.csv",
        "storage_session_id": uploaded["storage_session_id"],
        "kind": "user",
    }
    code = "import pandas as pd\nprint(pd.read_csv('data.csv').b.sum())\nprint(open('/mnt/data/data.csv').read())"
    body = await run(client, "py", code, files=[ref])
    assert body["stdout"].startswith("2\na,b\n1,2\n")


async def test_exec_mounts_legacy_session_id_refs_with_subfolders(client: httpx.AsyncClient) -> None:
    uploaded = await upload(client, "SKILL.md", b"# skill\n")
    ref = {
        "id": uploaded["files"][0]["fileId"],
        "session_id": uploaded["session_id"],
        "name": "skills/demo/SKILL.md",
    }
    body = await run(client, "bash", "cat skills/demo/SKILL.md", files=[ref])
    assert body["stdout"] == "# skill\n"


async def test_exec_skips_missing_file_refs(client: httpx.AsyncClient) -> None:
    ref = {"id": "A" * 21, "storage_session_id": "B" * 21, "name": "gone.txt"}
    body = await run(client, "bash", "ls; echo ran", files=[ref])
    assert body["stdout"] == "ran\n"


async def test_generated_files_download_under_the_response_session(client: httpx.AsyncClient) -> None:
    code = (
        "import os\nos.makedirs('charts', exist_ok=True)\n"
        "open('out.csv','w').write('x\\n1\\n')\nopen('charts/a.txt','w').write('nested')\n"
        "open('.hidden','w').write('no')"
    )
    body = await run(client, "py", code)
    names = sorted(item["name"] for item in body["files"])
    assert names == ["charts/a.txt", "out.csv"]
    for item in body["files"]:
        assert is_id(item["id"])
        assert item["storage_session_id"] == body["session_id"]
        response = await client.get(f"/download/{body['session_id']}/{item['id']}")
        assert response.status_code == 200
        assert response.content == (b"nested" if item["name"] == "charts/a.txt" else b"x\n1\n")


async def test_modified_input_comes_back_as_new_file_with_modified_from(client: httpx.AsyncClient) -> None:
    uploaded = await upload(client, "notes.txt", b"v1")
    file_id = uploaded["files"][0]["fileId"]
    ref = {"id": file_id, "storage_session_id": uploaded["storage_session_id"], "name": "notes.txt"}
    body = await run(client, "bash", "echo v2 >> notes.txt; cat notes.txt >/dev/null", files=[ref])
    assert len(body["files"]) == 1
    changed = body["files"][0]
    assert changed["id"] != file_id
    assert changed["modified_from"] == {"id": file_id, "storage_session_id": uploaded["storage_session_id"]}
    download = await client.get(f"/download/{body['session_id']}/{changed['id']}")
    assert download.content == b"v1v2\n"
    untouched = await run(client, "bash", "cat notes.txt", files=[ref])
    assert untouched["files"] == []
    assert untouched["stdout"] == "v1"


async def test_session_id_continues_a_session_with_its_files(client: httpx.AsyncClient) -> None:
    first = await run(client, "bash", "echo hello > greeting.txt")
    second = await run(client, "bash", "cat greeting.txt", session_id=first["session_id"])
    assert second["session_id"] == first["session_id"]
    assert second["stdout"] == "hello\n"


async def test_entity_id_reuses_the_entitys_latest_session(client: httpx.AsyncClient) -> None:
    first = await run(client, "bash", "echo kept > e.txt", entity_id="agent_abc-1")
    second = await run(client, "bash", "cat e.txt", entity_id="agent_abc-1")
    assert second["session_id"] == first["session_id"]
    assert second["stdout"] == "kept\n"


async def test_matplotlib_png_and_csv_come_back_as_files(client: httpx.AsyncClient) -> None:
    code = (
        "import matplotlib.pyplot as plt\nplt.plot([1,2,3],[1,4,9])\nplt.savefig('plot.png')\n"
        "import pandas as pd\npd.DataFrame({'x':[1,2]}).to_csv('table.csv', index=False)\nprint('done')"
    )
    body = await run(client, "py", code)
    assert body["stdout"] == "done\n"
    assert body["stderr"] == ""
    files = {item["name"]: item["id"] for item in body["files"]}
    png = await client.get(f"/download/{body['session_id']}/{files['plot.png']}")
    assert png.content.startswith(b"\x89PNG")
    assert png.headers["content-type"] == "image/png"
    csv = await client.get(f"/download/{body['session_id']}/{files['table.csv']}")
    assert csv.text == "x\n1\n2\n"


async def test_long_runs_stream_whitespace_keepalives_before_the_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/exec", json={"lang": "bash", "code": "sleep 4; echo late"})
    assert response.status_code == 200
    assert response.text.startswith(" ")
    assert response.json()["stdout"] == "late\n"


async def test_a_stored_file_whose_bytes_are_gone_is_skipped_not_fatal(client: httpx.AsyncClient) -> None:
    first = await run(client, "bash", "echo a > kept.txt; echo b > lost.txt")
    lost = next(item for item in first["files"] if item["name"] == "lost.txt")
    components = client._transport.app.state.components  # type: ignore[attr-defined]
    record = await components.sessions.get_file(first["session_id"], lost["id"])
    await components.sessions.blobs.delete(record.blob_key)
    body = await run(client, "bash", "ls", session_id=first["session_id"])
    assert body["stdout"] == "kept.txt\n"

"""Generated files from the warm path behave exactly like one-shot runs."""

from __future__ import annotations

import httpx

from tests.conftest import run, upload
from tests.repl.conftest import pool_of


async def test_a_plot_saved_to_mnt_data_comes_back_as_a_file(warm: httpx.AsyncClient) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.savefig('plot.png')\nprint('done')"
    body = await run(warm, "py", code)
    assert body["stdout"] == "done\n"
    assert body["stderr"] == ""
    [item] = body["files"]
    assert item["name"] == "plot.png"
    png = await warm.get(f"/download/{body['session_id']}/{item['id']}")
    assert png.content.startswith(b"\x89PNG")


async def test_an_edited_input_comes_back_as_a_new_version_with_modified_from(warm: httpx.AsyncClient) -> None:
    uploaded = await upload(warm, "notes.txt", b"v1")
    file_id, owner = uploaded["files"][0]["fileId"], uploaded["storage_session_id"]
    ref = {"id": file_id, "storage_session_id": owner, "name": "notes.txt"}
    body = await run(warm, "py", "open('notes.txt', 'a').write('v2')", files=[ref])
    [changed] = body["files"]
    assert changed["modified_from"] == {"id": file_id, "storage_session_id": owner}
    download = await warm.get(f"/download/{body['session_id']}/{changed['id']}")
    assert download.content == b"v1v2"
    untouched = await run(warm, "py", "print(open('notes.txt').read())", session_id=body["session_id"], files=[ref])
    assert untouched["files"] == []
    assert untouched["stdout"] == "v1\n"  # the reference names the original version, as in one-shot runs


async def test_a_kept_sandbox_sees_the_sessions_files_as_they_are_now(warm: httpx.AsyncClient) -> None:
    first = await run(warm, "py", "open('a.txt', 'w').write('a')\nkeep = 1")
    sid = first["session_id"]
    [made] = first["files"]
    second = await run(warm, "py", "import os\nprint(sorted(os.listdir('.')), keep)", session_id=sid)
    assert second["stdout"] == "['a.txt'] 1\n"
    assert sid in pool_of(warm).hot
    await warm.delete(f"/files/{sid}/{made['id']}")
    third = await run(warm, "py", "import os\nprint(sorted(os.listdir('.')), keep)", session_id=sid)
    assert third["stdout"] == "[] 1\n"  # a fresh sandbox, the state restored, the deleted file gone
    uploaded = await upload(warm, "late.txt", b"late")
    ref = {
        "id": uploaded["files"][0]["fileId"],
        "storage_session_id": uploaded["storage_session_id"],
        "name": "late.txt",
    }
    fourth = await run(warm, "py", "print(open('late.txt').read(), keep)", session_id=sid, files=[ref])
    assert fourth["stdout"] == "late 1\n"


async def test_a_kept_sandbox_does_not_keep_a_change_to_a_read_only_file(warm: httpx.AsyncClient) -> None:
    files = [("file", ("skills/demo/SKILL.md", b"# demo\n"))]
    skill = (
        await warm.post("/upload/batch", files=files, data={"kind": "skill", "id": "s1", "read_only": "true"})
    ).json()
    ref = {
        "id": skill["files"][0]["fileId"],
        "storage_session_id": skill["storage_session_id"],
        "name": "skills/demo/SKILL.md",
    }
    first = await run(warm, "py", "kept = 1\nopen('skills/demo/SKILL.md', 'a').write('changed')", files=[ref])
    assert [item.get("inherited") for item in first["files"]] == [True]
    second = await run(
        warm, "py", "print(kept, open('skills/demo/SKILL.md').read())", session_id=first["session_id"], files=[ref]
    )
    assert second["stdout"] == "1 # demo\n\n"
    assert second["files"] == []

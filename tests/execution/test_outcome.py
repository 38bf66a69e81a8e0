"""One program reads the same through /exec and /exec/programmatic: the outcome and its files are made
once (codeapi.execution.pipeline) and rendered once, whichever job ran the program."""

from __future__ import annotations

import httpx

from tests.conftest import run, upload
from tests.programmatic.conftest import start

FLOOD = "import sys\nsys.stderr.write('warned\\n')\nsys.stderr.flush()\nprint('x' * 200_000)"


async def test_an_output_cap_is_reported_alike_by_both_routes(client: httpx.AsyncClient) -> None:
    by_exec = await run(client, "py", FLOOD)
    by_program = await start(client, FLOOD, tools=[])
    assert by_program["error"] == "stdout length exceeded"
    assert by_program["stdout"] == by_exec["stdout"] == "x" * 64 * 1024
    assert by_program["stderr"] == by_exec["stderr"]
    assert by_exec["stderr"] == (
        "warned\n"
        "stdout length exceeded (OutputLimitExceeded: output is capped at 64 KiB per stream; the program was stopped)\n"
        "[stdout truncated at 64 KiB]\n"
    )


async def test_a_changed_input_is_reported_with_its_origin_by_both_routes(client: httpx.AsyncClient) -> None:
    uploaded = await upload(client, "notes.txt", b"first\n")
    ref = {"id": uploaded["files"][0]["fileId"], "storage_session_id": uploaded["storage_session_id"]}
    code = "open('notes.txt', 'a').write('second\\n')"
    by_exec = await run(client, "py", code, files=[{**ref, "name": "notes.txt"}])
    by_program = await start(client, code, tools=[], files=[{**ref, "name": "notes.txt"}])
    assert by_program["status"] == "completed"
    origin = {"id": ref["id"], "storage_session_id": ref["storage_session_id"]}
    for answer in (by_exec, by_program):
        [changed] = answer["files"]
        assert list(changed) == ["id", "name", "path", "storage_session_id", "session_id", "modified_from"]
        assert (changed["name"], changed["path"], changed["modified_from"]) == (
            "notes.txt",
            "/mnt/data/notes.txt",
            origin,
        )
        assert changed["session_id"] == changed["storage_session_id"] == answer["session_id"]

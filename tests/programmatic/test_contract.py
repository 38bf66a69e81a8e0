"""The official server's PTC extensions (contract §9.3, §9.4): what a pause shows of the output, the
cancel's answers, a continuation sent twice at once, and the end's ``run`` and ``deleted_files``."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.conftest import upload
from tests.programmatic.conftest import answer, start
from tests.programmatic.test_limits_and_cancel import REQUEST_ID, in_flight
from tests.programmatic.test_tokens_and_input import OTHER_KEY, two_keys

__all__ = ["two_keys"]

INVALID = {"status": "error", "error": "Invalid or expired continuation token"}


async def test_a_pause_shows_what_the_program_printed_since_the_last_one(client: httpx.AsyncClient) -> None:
    code = (
        "import sys\nprint('before')\nprint('warn one', file=sys.stderr)\nawait get_weather(city='A')\n"
        "print('between', 'é' * 3)\nawait get_weather(city='B')\nprint('after')"
    )
    first = await start(client, code)
    assert (first["partial_stdout"], first["partial_stderr"]) == ("before\n", "warn one\n")
    assert (first["stdout"], first["stderr"]) == ("", "")  # the whole output comes with the end
    second = await answer(client, first)
    assert (second["partial_stdout"], second["partial_stderr"]) == ("between ééé\n", "")
    final = await answer(client, second)
    assert final["stdout"] == "before\nbetween ééé\nafter\n"
    assert final["stderr"] == "warn one\n"


async def test_a_bash_pause_shows_its_output_too(client: httpx.AsyncClient) -> None:
    code = "echo one; echo oops >&2; get_weather '{\"city\": \"A\"}' >/dev/null; echo two; get_weather '{}'"
    first = await start(client, code, lang="bash")
    assert (first["partial_stdout"], first["partial_stderr"]) == ("one\n", "oops\n")
    second = await answer(client, first)
    assert (second["partial_stdout"], second["partial_stderr"]) == ("two\n", "")


async def test_the_end_reports_its_run_and_the_inputs_it_removed(client: httpx.AsyncClient) -> None:
    uploaded = await upload(client, "old.csv", b"a,b\n")
    ref = {"id": uploaded["files"][0]["fileId"], "storage_session_id": uploaded["storage_session_id"]}
    code = "import os\nawait get_weather(city='A')\nos.remove('old.csv')\nprint('done')"
    final = await answer(client, await start(client, code, files=[{**ref, "name": "old.csv"}]))
    assert final == {**final, "status": "completed", "stdout": "done\n", "deleted_files": ["old.csv"]}
    report = final["run"]
    assert (report["status"], report["code"], report["message"]) == (None, 0, None)
    assert report["cpu_time"] >= 0 and report["memory"] > 0
    assert report["wall_time"] >= 0
    assert "artifact_delivery" not in final


async def test_a_failed_program_reports_its_run(client: httpx.AsyncClient) -> None:
    final = await start(client, "import sys\nsys.exit(4)", tools=[])
    assert final == {**final, "status": "error", "error": "Sandbox exited with code 4"}
    assert (final["run"]["status"], final["run"]["code"]) == (None, 4)


async def test_a_continuation_sent_twice_at_once_is_409(client: httpx.AsyncClient) -> None:
    reply = await start(client, "await get_weather(city='A')\nwhile True:\n    pass", timeout=5000)
    request_id = f"first-{uuid.uuid4().hex[:8]}"
    body = {
        "continuation_token": reply["continuation_token"],
        "tool_results": [{"call_id": reply["tool_calls"][0]["id"], "result": 1, "is_error": False}],
    }
    first = asyncio.create_task(client.post("/exec/programmatic", json=body, headers={REQUEST_ID: request_id}))
    await in_flight(client, request_id)
    second = await client.post("/exec/programmatic", json=body)
    assert second.status_code == 409
    assert second.json()["error_type"] == "conflict"
    assert (await first).json()["error"] == "Time limit exceeded"  # the first one went on undisturbed
    assert await answer(client, reply) == INVALID  # once it has answered, the token is simply used


async def test_another_callers_request_cannot_be_cancelled(two_keys: httpx.AsyncClient) -> None:
    request_id = f"owned-{uuid.uuid4().hex[:8]}"
    reply = await start(two_keys, "await get_weather(city='A')", headers={REQUEST_ID: request_id})
    refused = await two_keys.post(
        "/exec/programmatic/cancel", json={"request_id": request_id}, headers={"x-api-key": OTHER_KEY}
    )
    assert refused.status_code == 403
    assert refused.json()["error_type"] == "authorization"
    assert (await answer(two_keys, reply))["status"] == "completed"  # nothing was stopped

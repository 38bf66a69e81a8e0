"""The last step of every execution is the same for both routes: one INFO line per execution, however
many requests a programmatic program took."""

from __future__ import annotations

from typing import Any

import httpx
from structlog.testing import capture_logs

from tests.conftest import run
from tests.programmatic.conftest import complete, start

TWO_ROUNDS = "a = await get_weather(city='A')\nb = await get_weather(city='B')\nprint(a['city'] + b['city'])"


def finished_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "exec.finished"]


async def test_an_exec_run_has_one_finished_line(client: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        await run(client, "bash", "echo hi; exit 2")
    [line] = finished_lines(logs)
    assert (line["log_level"], line["termination"], line["exit_code"], line["files"]) == ("info", "exited", 2, 0)


async def test_a_program_of_several_rounds_has_one_finished_line_at_its_end(client: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        reply = await start(client, TWO_ROUNDS)
        final, batches = await complete(client, reply)
    assert final["stdout"] == "AB\n" and len(batches) == 2
    [line] = finished_lines(logs)
    assert (line["log_level"], line["termination"], line["exit_code"], line["rounds"]) == ("info", "exited", 0, 2)
    assert line["error"] is None and line["run_id"]

"""What /exec says about a run beyond its output (contract §9.3): ``run`` with the job cgroup's CPU time
and memory peak, ``language`` and ``version``, and the client's strings for a program the API stopped."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from codeapi.units import MB
from tests.conftest import ClientFactory, run

# Burns CPU until its own process has used 300 ms since it started, and prints what it used (ms).
BURN = (
    "import time\nstart = time.process_time()\nwhile time.process_time() - start < 0.3:\n    pass\n"
    "print(int((time.process_time() - start) * 1000))"
)
# Holds 200 MB, touched, at its peak (and keeps none of it for the session).
HOLD = "block = bytearray(200 * 1024 * 1024)\nprint(len(block))\ndel block"
# A bash loop, then the shell's own CPU time: ``times`` prints "<user>m<s>s <sys>m<s>s" first.
BASH_BURN = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; times"


def bash_cpu_ms(times: str) -> int:
    user, system = (re.fullmatch(r"(\d+)m([\d.]+)s", part) for part in times.splitlines()[0].split())
    assert user is not None and system is not None
    return sum(int(found[1]) * 60_000 + round(float(found[2]) * 1000) for found in (user, system))


@pytest.fixture(scope="module")
async def one_shot_python(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    """An app without warm Python: every Python run is a one-shot sandbox, as every other language's."""
    async with make_client(repl_enabled=False, max_execution_time=5, max_output_kb=16) as client:
        yield client


async def test_a_run_reports_how_it_ended_with_its_language_and_version(client: httpx.AsyncClient) -> None:
    body = await run(client, "bash", "echo out; exit 3")
    assert body["language"] == "bash"
    assert re.fullmatch(r"\d+(\.\d+)+", body["version"])
    report = body["run"]
    assert list(report) == ["status", "code", "signal", "message", "wall_time", "cpu_time", "memory"]
    assert (report["status"], report["code"], report["signal"], report["message"]) == (None, 3, None, None)
    assert isinstance(report["wall_time"], int)


async def test_cpu_time_counts_at_least_what_the_program_itself_used(client: httpx.AsyncClient) -> None:
    """The job's cgroup counts every process of the run: never less than the program's own clock."""
    python = await run(client, "py", BURN)
    assert int(python["stdout"]) >= 300
    assert python["run"]["cpu_time"] >= int(python["stdout"])
    shell = await run(client, "bash", BASH_BURN)
    assert shell["run"]["cpu_time"] >= bash_cpu_ms(shell["stdout"]) - 1  # times rounds to the millisecond


async def test_warm_python_reports_its_own_call_only(client: httpx.AsyncClient) -> None:
    """A kept sandbox counts each call from its start: a light call after a heavy one is light."""
    heavy = await run(client, "py", f"{HOLD}\n{BURN}")
    light = await run(client, "py", "print(1)", session_id=heavy["session_id"])
    assert heavy["run"]["memory"] >= 200 * MB and heavy["run"]["cpu_time"] >= 300
    assert light["run"]["cpu_time"] < heavy["run"]["cpu_time"]
    assert light["run"]["memory"] < 200 * MB


async def test_memory_is_the_runs_peak(client: httpx.AsyncClient, one_shot_python: httpx.AsyncClient) -> None:
    for app in (client, one_shot_python):
        body = await run(app, "py", HOLD)
        assert body["stdout"] == f"{200 * MB}\n"
        assert body["run"]["memory"] >= 200 * MB
    small = await run(one_shot_python, "bash", "echo small")
    assert 0 < small["run"]["memory"] < 200 * MB


async def test_one_shot_python_reports_cpu_and_memory(one_shot_python: httpx.AsyncClient) -> None:
    body = await run(one_shot_python, "py", BURN)
    assert body["run"]["cpu_time"] >= int(body["stdout"])
    assert body["run"]["memory"] > 0
    assert body["language"] == "py"


async def test_a_timeout_says_time_limit_exceeded(one_shot_python: httpx.AsyncClient) -> None:
    body = await run(one_shot_python, "bash", "sleep 30", timeout=1000)
    assert body["stderr"].startswith("Time limit exceeded (TimeoutError: Execution exceeded 1 seconds)")
    assert body["run"] == {
        **body["run"],
        "status": "TO",
        "code": None,
        "signal": "SIGKILL",
        "message": "Time limit exceeded",
    }


async def test_running_out_of_memory_says_out_of_memory(one_shot_python: httpx.AsyncClient) -> None:
    code = "#include <stdlib.h>\n#include <string.h>\nint main(void){ for (;;) memset(malloc(1 << 24), 1, 1 << 24); }"
    body = await run(one_shot_python, "c", code)
    assert "Out of memory (MemoryError: Execution exceeded the memory limit of 512 MB" in body["stderr"]
    assert body["run"] == {**body["run"], "status": "SG", "signal": "SIGKILL", "message": "Out of memory"}
    assert body["run"]["memory"] >= 500 * MB


@pytest.mark.parametrize(("stream", "status"), [("stdout", "OL"), ("stderr", "EL")])
async def test_an_output_cap_says_which_stream_exceeded_its_length(
    one_shot_python: httpx.AsyncClient, stream: str, status: str
) -> None:
    redirect = "" if stream == "stdout" else " >&2"
    body = await run(one_shot_python, "bash", f"while :; do echo xxxxxxxxxxxxxxxxxxxxxxxxxx{redirect}; done")
    assert f"{stream} length exceeded (OutputLimitExceeded: output is capped at 16 KiB" in body["stderr"]
    assert body["run"] == {**body["run"], "status": status, "code": None, "message": f"{stream} length exceeded"}


async def test_a_program_killed_by_a_signal_names_it(client: httpx.AsyncClient) -> None:
    body = await run(client, "bash", "bash -c 'kill -SEGV $$'; exit $?")
    assert body["run"] == {**body["run"], "status": "SG", "code": 139, "signal": "SIGSEGV", "message": None}
    assert "Process terminated by signal 11" in body["stderr"]

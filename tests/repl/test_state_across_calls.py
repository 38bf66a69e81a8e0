"""A Python session keeps its variables, functions, classes and imports from one call to the next."""

from __future__ import annotations

import httpx

from tests.conftest import run, upload
from tests.repl.conftest import WarmClientFactory, executions, pool_of

DEFINE = """
import numpy as np
import statistics as stats
counter = 41
def bump(n):
    return n + 1
class Box:
    def __init__(self, value):
        self.value = value
box = Box(np.arange(3))
"""

USE = "counter = bump(counter)\nprint(counter, box.value.sum(), stats.mean([1, 3]), np.pi > 3)"


async def test_variables_functions_classes_and_imports_survive_across_calls(warm: httpx.AsyncClient) -> None:
    first = await run(warm, "py", DEFINE)
    assert first["stderr"] == ""
    second = await run(warm, "py", USE, session_id=first["session_id"])
    assert second["stdout"] == "42 3 2 True\n"
    third = await run(warm, "py", "print(counter)", session_id=first["session_id"])
    assert third["stdout"] == "42\n"


async def test_a_trailing_expression_is_echoed_like_the_python_repl(warm: httpx.AsyncClient) -> None:
    body = await run(warm, "py", "x = [1, 2]\nx + [3]")
    assert body["stdout"] == "[1, 2, 3]\n"
    silent = await run(warm, "py", "x = 5\nNone")
    assert silent["stdout"] == ""
    printed = await run(warm, "py", "print('once')")
    assert printed["stdout"] == "once\n"


async def test_entity_id_and_same_user_file_refs_continue_the_state(warm: httpx.AsyncClient) -> None:
    first = await run(warm, "py", "agent_value = 'kept'", entity_id="agent-state-1")
    by_entity = await run(warm, "py", "print(agent_value)", entity_id="agent-state-1")
    assert by_entity["session_id"] == first["session_id"]
    assert by_entity["stdout"] == "kept\n"
    uploaded = await upload(warm, "in.txt", b"data", kind="user", id="user-42")
    owner = uploaded["session_id"]
    await run(warm, "py", "owner_value = 7", session_id=owner, user_id="user-42")
    ref = {"id": uploaded["files"][0]["fileId"], "storage_session_id": owner, "name": "in.txt"}
    by_file = await run(warm, "py", "print(owner_value)", files=[ref], user_id="user-42")
    assert by_file["session_id"] == owner
    assert by_file["stdout"] == "7\n"


async def test_state_is_restored_into_a_fresh_sandbox_when_the_kept_one_is_gone(warm: httpx.AsyncClient) -> None:
    first = await run(warm, "py", "import pandas as pd\nframe = pd.DataFrame({'a': [1, 2]})")
    pool = pool_of(warm)
    kept = pool.hot.pop(first["session_id"])
    pool.discard(kept)
    again = await run(warm, "py", "print(frame.a.sum())", session_id=first["session_id"])
    assert again["stdout"] == "3\n"


async def test_state_survives_an_api_restart(warm_client: WarmClientFactory, new_root: object) -> None:
    root = new_root()  # type: ignore[operator]
    async with warm_client(root) as before:
        first = await run(before, "py", "def greet(name):\n    return 'hi ' + name\nsaved = greet('there')")
    async with warm_client(root) as after:
        again = await run(after, "py", "print(saved, greet('again'))", session_id=first["session_id"])
    assert again["stdout"] == "hi there hi again\n"


async def test_unserialisable_variables_are_skipped_with_a_note(warm: httpx.AsyncClient) -> None:
    code = "handle = open('notes.txt', 'w')\ncount = (i for i in range(3))\nplain = 1"
    first = await run(warm, "py", code)
    assert "Not kept for the next execution" in first["stderr"]
    assert "handle (TextIOWrapper)" in first["stderr"] and "count (generator)" in first["stderr"]
    assert "plain" not in first["stderr"]
    pool = pool_of(warm)
    pool.discard(pool.hot.pop(first["session_id"]))  # force the restore path
    again = await run(warm, "py", "print(plain, 'handle' in globals())", session_id=first["session_id"])
    assert again["stdout"] == "1 False\n"


async def test_an_error_without_capture_keeps_the_state_from_before_it(warm: httpx.AsyncClient) -> None:
    first = await run(warm, "py", "value = 1")
    failed = await run(warm, "py", "value = 2\nraise ValueError('boom')", session_id=first["session_id"])
    assert "ValueError: boom" in failed["stderr"]
    assert 'File "/code/main.py", line 2' in failed["stderr"]
    after = await run(warm, "py", "print(value)", session_id=first["session_id"])
    assert after["stdout"] == "1\n"


async def test_with_capture_on_error_the_failed_calls_changes_are_kept(warm_client: WarmClientFactory) -> None:
    async with warm_client(STATE_CAPTURE_ON_ERROR=True) as client:
        first = await run(client, "py", "value = 1")
        await run(client, "py", "value = 2\nraise ValueError('boom')", session_id=first["session_id"])
        after = await run(client, "py", "print(value)", session_id=first["session_id"])
    assert after["stdout"] == "2\n"


async def test_without_persistence_every_call_starts_empty(warm_client: WarmClientFactory) -> None:
    async with warm_client(STATE_PERSISTENCE_ENABLED=False) as client:
        assert executions(client).warm is not None
        first = await run(client, "py", "gone = 1\nprint('ran warm')")
        after = await run(client, "py", "print('gone' in globals())", session_id=first["session_id"])
    assert first["stdout"] == "ran warm\n"
    assert after["stdout"] == "False\n"

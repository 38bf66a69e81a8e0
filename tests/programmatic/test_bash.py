"""Bash programs call tools as functions taking a JSON string, as @librechat/agents describes them."""

from __future__ import annotations

import httpx

from tests.programmatic.conftest import answer, complete, start

# What the real run_tools_with_bash prepends to the model's code (BASH_LAST_BACKGROUND_PID_GUARD).
CLIENT_GUARD = ': &\nwait "$!"\n'


async def test_a_tool_prints_its_result_as_compact_json(client: httpx.AsyncClient) -> None:
    code = CLIENT_GUARD + 'data=$(get_weather \'{"city": "SF"}\')\necho "$data" | jq -r .city'
    reply = await start(client, code, lang="bash")
    assert [(call["name"], call["input"]) for call in reply["tool_calls"]] == [("get-weather", {"city": "SF"})]
    final = await answer(client, reply)
    assert final["status"] == "completed", final
    assert final["stdout"] == "SF\n"


async def test_background_calls_run_in_parallel(client: httpx.AsyncClient) -> None:
    """Calls arriving within 20 ms of each other share a batch; how many batches is up to the host's speed."""
    code = CLIENT_GUARD + (
        '{ sf=$(get_weather \'{"city": "SF"}\'); printf \'%s\\n\' "$sf" > /mnt/data/sf.json; } &\n'
        '{ ny=$(get_weather \'{"city": "NY"}\'); printf \'%s\\n\' "$ny" > /mnt/data/ny.json; } &\n'
        "wait\n"
        'echo "SF: $(jq -r .temp /mnt/data/sf.json) NY: $(jq -r .city /mnt/data/ny.json)"'
    )
    final, batches = await complete(client, await start(client, code, lang="bash"))
    assert sorted(call["input"]["city"] for batch in batches for call in batch) == ["NY", "SF"]
    assert final["stdout"] == "SF: 20 NY: NY\n"
    assert sorted(item["name"] for item in final["files"]) == ["ny.json", "sf.json"]


async def test_a_tool_error_goes_to_stderr_and_fails_the_function(client: httpx.AsyncClient) -> None:
    code = "if out=$(fail '{}'); then echo ok; else echo \"failed with $?\"; fi"
    final, _ = await complete(client, await start(client, code, lang="bash"))
    assert final["stdout"] == "failed with 1\n"
    assert "the tool broke" in final["stderr"]


async def test_reserved_words_get_the_tool_suffix(client: httpx.AsyncClient) -> None:
    tools = [{"name": "done", "description": "bash keyword", "parameters": {}}]
    reply = await start(client, "done_tool '{}'", tools=tools, lang="bash")
    assert reply["tool_calls"][0]["name"] == "done"
    assert (await answer(client, reply))["status"] == "completed"


async def test_an_argument_that_is_not_a_json_object_is_refused_in_the_sandbox(client: httpx.AsyncClient) -> None:
    final = await start(client, "get_weather 'SF' || echo refused", lang="bash")
    assert final["status"] == "completed"
    assert final["stdout"] == "refused\n"
    assert "invalid tool call" in final["stderr"]


async def test_a_failing_script_reports_its_exit_code(client: httpx.AsyncClient) -> None:
    final = await start(client, "echo partial; exit 3", lang="bash")
    assert final == {**final, "status": "error", "error": "Sandbox exited with code 3", "stdout": "partial\n"}

"""Python programs call the client's tools as async functions, through the real app and sandbox."""

from __future__ import annotations

import httpx

from tests.conftest import run, upload
from tests.programmatic.conftest import TOOLS, answer, complete, start
from tests.repl.conftest import wait_until_warm


async def test_a_call_pauses_the_program_and_its_result_arrives_as_decoded_json(client: httpx.AsyncClient) -> None:
    reply = await start(client, "r = await get_weather(city='SF')\nprint(r['city'], r['temp'] + 1)")
    assert reply["status"] == "tool_call_required"
    assert [(call["name"], call["input"]) for call in reply["tool_calls"]] == [("get-weather", {"city": "SF"})]
    assert len(reply["tool_calls"][0]["id"]) == 12
    final = await answer(client, reply)
    assert final["status"] == "completed"
    assert final["stdout"] == "SF 21\n"
    assert final["session_id"] == reply["session_id"]


async def test_gathered_calls_come_back_in_one_batch_without_importing_asyncio(client: httpx.AsyncClient) -> None:
    code = (
        "rs = await asyncio.gather(*(get_weather(city=c) for c in 'ABCDE'))\nprint(json.dumps([r['city'] for r in rs]))"
    )
    final, batches = await complete(client, await start(client, code))
    assert [[call["input"]["city"] for call in batch] for batch in batches] == [list("ABCDE")]
    assert final["stdout"] == '["A", "B", "C", "D", "E"]\n'


async def test_rounds_follow_one_another_in_the_same_process(client: httpx.AsyncClient) -> None:
    code = "seen = []\nfor c in ('X', 'Y', 'Z'):\n    seen.append((await get_weather(city=c))['city'])\nprint(''.join(seen))"
    final, batches = await complete(client, await start(client, code))
    assert len(batches) == 3
    assert final["stdout"] == "XYZ\n"


async def test_a_tool_error_is_raised_in_the_program_with_its_message(client: httpx.AsyncClient) -> None:
    code = "try:\n    await fail()\nexcept RuntimeError as error:\n    print('caught:', error)"
    final, _ = await complete(client, await start(client, code))
    assert final["stdout"] == "caught: the tool broke\n"


async def test_an_uncaught_tool_error_ends_the_run_with_its_traceback(client: httpx.AsyncClient) -> None:
    final, _ = await complete(client, await start(client, "print('before')\nawait fail()"))
    assert final["status"] == "error"
    assert final["error"] == "Sandbox exited with code 1"
    assert final["stdout"] == "before\n"
    assert "RuntimeError: the tool broke" in final["stderr"]


async def test_keyword_names_get_the_tool_suffix_and_map_back(client: httpx.AsyncClient) -> None:
    reply = await start(client, "print(await class_tool())")
    assert reply["tool_calls"][0]["name"] == "class"
    final = await answer(client, reply)
    assert final["stdout"] == "a keyword\n"


async def test_tools_take_keyword_arguments_only(client: httpx.AsyncClient) -> None:
    final = await start(client, "await get_weather('SF')")
    assert final["status"] == "error"
    assert "get_weather() takes keyword arguments only" in final["stderr"]


async def test_a_program_without_calls_completes_at_once(client: httpx.AsyncClient) -> None:
    final = await start(client, "print(sum(range(10)))")
    assert final == {**final, "status": "completed", "stdout": "45\n"}


async def test_files_go_in_and_come_out_as_in_exec(client: httpx.AsyncClient) -> None:
    uploaded = await upload(client, "cities.txt", b"Paris\nRome\n")
    ref = {
        "id": uploaded["files"][0]["fileId"],
        "storage_session_id": uploaded["storage_session_id"],
        "name": "cities.txt",
    }
    code = (
        "cities = open('cities.txt').read().split()\n"
        "rs = await asyncio.gather(*(get_weather(city=c) for c in cities))\n"
        "open('report.json', 'w').write(json.dumps(rs))"
    )
    final, _ = await complete(client, await start(client, code, files=[ref]))
    assert final["status"] == "completed"
    [report] = final["files"]
    assert report["name"] == "report.json"
    download = await client.get(f"/download/{final['session_id']}/{report['id']}")
    assert download.json() == [{"city": "Paris", "temp": 20}, {"city": "Rome", "temp": 20}]


async def test_a_continued_session_sees_its_earlier_files(client: httpx.AsyncClient) -> None:
    first = await start(client, "open('note.txt', 'w').write('kept')")
    again = await start(client, "print(open('note.txt').read())", session_id=first["session_id"])
    assert again["stdout"] == "kept\n"


async def test_tools_are_the_ones_given_and_nothing_else(client: httpx.AsyncClient) -> None:
    final = await start(client, "await fail()", tools=[TOOLS[0]])
    assert final["status"] == "error"
    assert "NameError" in final["stderr"]


async def test_variables_carry_over_to_the_sessions_next_calls_as_in_exec(client: httpx.AsyncClient) -> None:
    await wait_until_warm(client)  # /exec keeps variables on its warm path (a cold run starts empty)
    final, _ = await complete(client, await start(client, "city = (await get_weather(city='Oslo'))['city']"))
    session_id = final["session_id"]
    assert (await run(client, "py", "print(city)\ncount = 2", session_id=session_id))["stdout"] == "Oslo\n"
    again = await start(client, "print(city * count, json.dumps(count))", session_id=session_id)
    assert again["stdout"] == "OsloOslo 2\n"


async def test_a_saved_variable_does_not_shadow_a_tool(client: httpx.AsyncClient) -> None:
    await wait_until_warm(client)
    first = await run(client, "py", "get_weather = 'a string now'")
    reply = await start(client, "print(type(get_weather).__name__)", session_id=first["session_id"])
    assert reply["stdout"] == "function\n"

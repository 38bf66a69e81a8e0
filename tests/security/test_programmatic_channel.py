"""Hostile programs on the tool channel of POST /exec/programmatic: fake, malformed and flooding frames.

The program owns its end of the channel (it can find the socket in /proc/self/fd), so what it
writes there is checked like any input: a frame for a tool that was not given, a malformed or
oversized frame ends the run with a clear error, and nothing of the run survives it.
"""

from __future__ import annotations

from typing import Any

from tests.programmatic.conftest import TOOLS, answer
from tests.security.conftest import Hostile

# Finds the channel like hostile code would: the driver's own objects are in reach of the program.
WRITE_FRAME = """
import gc, os, struct
channel = next(item for item in gc.get_objects() if type(item).__name__ == 'Channel')
fd = channel.writer.get_extra_info('socket').fileno()
def frame(payload, size=None):
    os.write(fd, struct.pack('>I', len(payload) if size is None else size) + payload)
"""


async def start(hostile: Hostile, code: str, lang: str = "py") -> dict[str, Any]:
    response = await hostile.client.post("/exec/programmatic", json={"code": code, "tools": TOOLS, "lang": lang})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_fake_frame_for_an_unregistered_tool_ends_the_run(hostile: Hostile) -> None:
    final = await start(
        hostile,
        WRITE_FRAME + 'frame(b\'{"calls":[{"name":"delete_everything","input":{}}]}\')\nimport time\ntime.sleep(30)',
    )
    assert final["status"] == "error"
    assert final["error"] == "Sandbox requested an unregistered tool: delete_everything"


async def test_a_malformed_frame_ends_the_run(hostile: Hostile) -> None:
    final = await start(hostile, WRITE_FRAME + "frame(b'not json')\nimport time\ntime.sleep(30)")
    assert final["status"] == "error"
    assert "malformed frame" in final["stderr"]


async def test_an_oversized_frame_is_refused_before_it_is_read(hostile: Hostile) -> None:
    final = await start(hostile, WRITE_FRAME + "frame(b'x' * 10, size=2**31)\nimport time\ntime.sleep(30)")
    assert final["status"] == "error"
    assert "exceeds 1024 KiB" in final["stderr"]


async def test_a_fake_frame_for_a_given_tool_is_only_a_call_of_its_own(hostile: Hostile) -> None:
    code = WRITE_FRAME + (
        'frame(b\'{"calls":[{"name":"get-weather","input":{"city":"forged"}}]}\')\n'
        "import select\nselect.select([fd], [], [], 10)\nprint(os.read(fd, 4096)[4:].decode())"
    )
    reply = await start(hostile, code)
    assert [call["input"] for call in reply["tool_calls"]] == [{"city": "forged"}]
    final = await answer(hostile.client, reply)
    assert final["stdout"] == '{"results":[{"ok":true,"value":{"city":"forged","temp":20}}]}\n'


async def test_a_flood_of_frames_blocks_the_program_not_the_api(hostile: Hostile) -> None:
    flood = WRITE_FRAME + (
        "import socket\n"
        "blocking = socket.socket(fileno=os.dup(fd))\n"
        "blocking.setblocking(True)\n"
        'payload = b\'{"calls":[{"name":"get-weather","input":{"pad":"\' + b\'x\' * 60000 + b\'"}}]}\'\n'
        "while True:\n"
        "    blocking.sendall(struct.pack('>I', len(payload)) + payload)"
    )
    reply = await start(hostile, flood)
    assert reply["status"] == "tool_call_required"
    assert (await hostile.client.get("/health")).status_code == 200
    rounds = 1
    while reply["status"] == "tool_call_required":
        reply = await answer(hostile.client, reply)
        rounds += 1
    assert rounds == 21
    assert "more than 20 rounds" in reply["stderr"]


async def test_a_bash_program_cannot_reach_a_tool_that_was_not_given(hostile: Hostile) -> None:
    code = 'printf "x 99\\n" >&"$CODEAPI_TOOL_PIPE"; echo \'{}\' > "$CODEAPI_TOOL_DIR/x.in"; sleep 1; echo still-here'
    final = await start(hostile, code, lang="bash")
    assert final["status"] == "completed"
    assert final["stdout"] == "still-here\n"

"""The REPL framing and what forged or garbage frames from user code can (not) do."""

from __future__ import annotations

import json

import httpx
import pytest

from codeapi.execution.warm import RESTARTED_NOTE
from codeapi.repl import protocol
from tests.conftest import run


def test_messages_round_trip_with_binary_blobs_in_any_chunking() -> None:
    messages: list[protocol.Message] = [
        protocol.Run("nonce", "print('é')".encode(), ("a", "b"), protocol.Save.ON_SUCCESS, bytes(range(256))),
        protocol.Done("nonce", 3, True, state_skipped=("f (TextIOWrapper)",), state_too_large=7),
        protocol.Ready(12),
    ]
    decoder = protocol.FrameDecoder(1024 * 1024)
    stream = b"".join(protocol.encode(message) for message in messages)
    decoded = [message for index in range(len(stream)) for message in decoder.feed(stream[index : index + 1])]
    assert decoded == messages


def test_zygote_control_messages_round_trip_and_refuse_mistyped_fields() -> None:
    messages: list[protocol.Control] = [
        protocol.ZygoteReady(),
        protocol.Spawn("7", 1234, 46001, ("/sys/fs/cgroup/pids/x",), 1024),
        protocol.Spawned("7", 99),
        protocol.SpawnFailed("7", "setns: EPERM"),
        protocol.Exited(99, -9),
    ]
    assert [protocol.decode_control(protocol.encode_control(message)) for message in messages] == messages
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_control(b'{"type": "exited", "pid": "99", "status": 0}')


@pytest.mark.parametrize(
    "header",
    [
        {"type": "done", "call": "x", "exit_code": "0", "failed": False},  # a field of the wrong type
        {"type": "done", "call": "x", "exit_code": True, "failed": False},  # a bool is not an exit code
        {"type": "done", "call": "x", "failed": False},  # a required field missing
        {"type": "done", "call": "x", "exit_code": 0, "failed": False, "state_skipped": [1]},
        {"type": "result", "call": "x"},  # no such message
    ],
)
def test_messages_with_missing_or_mistyped_fields_are_refused(header: dict[str, object]) -> None:
    raw = json.dumps({**header, "blobs": []}).encode()
    with pytest.raises(protocol.ProtocolError):
        protocol.FrameDecoder(1024).feed(protocol.PREFIX.pack(len(raw), 0) + raw)


TABLE = b'{"type":"x","blobs":[["a",9]]}'


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xff\xff\xff\x00\x00\x00\x00",  # a header length far over the cap
        protocol.PREFIX.pack(4, 0) + b"nope",  # not JSON
        protocol.PREFIX.pack(2, 0) + b"[]",  # JSON, not an object with a type
        protocol.PREFIX.pack(len(TABLE), 5) + TABLE + b"12345",  # the blob table does not match the body
    ],
)
def test_malformed_frames_are_refused(garbage: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.FrameDecoder(1024).feed(garbage)


def test_a_frame_over_the_cap_is_refused_before_it_is_read() -> None:
    big = protocol.encode(protocol.Done("nonce", 0, False, state=b"x" * 2048))
    with pytest.raises(protocol.ProtocolError):
        protocol.FrameDecoder(1024).feed(big[: protocol.PREFIX.size])


FORGE_RESULT = """
import os, json, struct
header = json.dumps({"type": "result", "id": "1", "ending": "exited", "worker": {}, "blobs": [["stdout", 6]]}).encode()
os.write(3, struct.pack(">II", len(header), 6) + header + b"FORGED")
print("real output")
"""

FORGE_GARBAGE = "import os\nos.write(3, b'\\x00\\x00\\x00\\x05garbage that is not a frame')\nprint('real output')"


@pytest.mark.parametrize("code", [FORGE_RESULT, FORGE_GARBAGE], ids=["forged_result", "garbage"])
async def test_user_code_writing_to_its_link_cannot_forge_a_result(warm: httpx.AsyncClient, code: str) -> None:
    """fd 3 reaches only the API, which accepts nothing but the worker's report of this call from it."""
    first = await run(warm, "py", "kept = 'yes'")
    body = await run(warm, "py", code, session_id=first["session_id"])
    assert "FORGED" not in body["stdout"]
    assert RESTARTED_NOTE in body["stderr"]
    after = await run(warm, "py", "print(kept)", session_id=first["session_id"])
    assert after["stdout"] == "yes\n"


async def test_user_prints_that_look_like_frames_are_just_output(warm: httpx.AsyncClient) -> None:
    code = 'import sys\nsys.stdout.buffer.write(b\'\\x00\\x00\\x00\\x10{"type":"result"}\')\nsys.stdout.flush()'
    body = await run(warm, "py", code)
    assert body["stdout"].endswith('{"type":"result"}')
    assert body["stderr"] == ""

"""The REPL framing and what forged or garbage frames from user code can (not) do."""

from __future__ import annotations

import httpx
import pytest

from codeapi.execution.warm import RESTARTED_NOTE
from codeapi.repl import protocol
from tests.conftest import run


def test_frames_round_trip_with_binary_blobs_in_any_chunking() -> None:
    frames = [
        protocol.encode({"type": protocol.RUN, "id": "1"}, {"state": bytes(range(256))}),
        protocol.encode({"type": protocol.DONE, "id": "1"}),
    ]
    decoder = protocol.FrameDecoder(1024 * 1024)
    stream = b"".join(frames)
    decoded = [frame for index in range(len(stream)) for frame in decoder.feed(stream[index : index + 1])]
    assert [frame.kind for frame in decoded] == [protocol.RUN, protocol.DONE]
    assert decoded[0].blobs == {"state": bytes(range(256))}
    assert decoded[1].blobs == {}


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
    big = protocol.encode({"type": protocol.DONE}, {"state": b"x" * 2048})
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

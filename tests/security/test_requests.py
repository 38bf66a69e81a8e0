"""Malformed and oversized requests, and programs that print things that look like the protocol.

A bad request is a 4xx with the usual error envelope; what a program prints is only ever data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from codeapi.http.routes.exec import MAX_EXEC_BODY_BYTES
from tests.conftest import upload
from tests.security.conftest import Hostile, execute


async def test_exec_body_over_its_cap_is_413(hostile: Hostile) -> None:
    # Expected: the body is refused while it streams in, before JSON parsing or any sandbox work.
    padding = "#" * (MAX_EXEC_BODY_BYTES + 1)
    response = await hostile.client.post("/exec", json={"lang": "py", "code": "print(1)", "args": [padding]})
    assert response.status_code == 413


async def test_code_over_one_mib_is_413_naming_the_field(hostile: Hostile) -> None:
    # Expected: a program text over 1 MiB is refused with the error envelope, field "code".
    response = await hostile.client.post("/exec", json={"lang": "py", "code": "x = 1\n" * 200_000})
    assert response.status_code == 413
    body = response.json()
    assert body["details"][0]["field"] == "code"


async def test_streamed_body_without_length_is_capped_too(hostile: Hostile) -> None:
    # Expected: a chunked body with no Content-Length is counted as it arrives and cut at the cap.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"lang": "py", "code": "'
        for _ in range(MAX_EXEC_BODY_BYTES // 65536 + 1):
            yield b"#" * 65536
        yield b'"}'

    response = await hostile.client.post("/exec", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


async def test_invalid_json_is_422(hostile: Hostile) -> None:
    # Expected: a broken body is a validation error, not a crash.
    response = await hostile.client.post(
        "/exec", content=b'{"lang": "py", "code": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


async def test_wrong_types_are_422(hostile: Hostile) -> None:
    # Expected: code as an object, a negative timeout and a list as lang are all rejected.
    for payload in (
        {"lang": "py", "code": {"x": 1}},
        {"lang": "py", "code": "1", "timeout": -5},
        {"lang": ["py"], "code": "1"},
    ):
        response = await hostile.client.post("/exec", json=payload)
        assert response.status_code == 422, payload


async def test_unknown_language_is_400(hostile: Hostile) -> None:
    # Expected: a language id that looks like a path or command is just an unknown language.
    response = await hostile.client.post("/exec", json={"lang": "../../bin/sh", "code": "id"})
    assert response.status_code == 400


async def test_file_reference_with_traversal_name_is_not_written_on_the_host(hostile: Hostile) -> None:
    # Expected: inputs are staged by the API as root, so a name like "../../../../tmp/x" must be
    # sanitised: nothing appears at that host path, and inside the sandbox it is under /mnt/data.
    marker = f"codeapi-traversal-{uuid.uuid4().hex}"
    uploaded = await upload(hostile.client, "note.txt", b"payload")
    ref = {
        "id": uploaded["files"][0]["fileId"],
        "session_id": uploaded["session_id"],
        "name": "../" * 16 + f"tmp/{marker}",
    }
    code = f"find / -name '{marker}*' 2>/dev/null"
    response = await hostile.client.post("/exec", json={"lang": "bash", "code": code, "files": [ref]})
    assert response.status_code in (200, 400)
    assert not (Path("/tmp") / marker).exists()
    if response.status_code == 200:
        assert all(line.startswith("/mnt/data/") for line in response.json()["stdout"].split())


async def test_file_reference_to_unknown_ids_does_not_crash(hostile: Hostile) -> None:
    # Expected: references to files and sessions that do not exist are skipped or refused, never a 5xx.
    ref = {"id": "../../../etc/passwd", "session_id": "../sessions", "name": "passwd"}
    response = await hostile.client.post("/exec", json={"lang": "bash", "code": "ls", "files": [ref]})
    assert response.status_code < 500


async def test_nul_byte_in_code_is_harmless(hostile: Hostile) -> None:
    # Expected: a NUL in the program text is data for the interpreter, nothing more.
    response = await hostile.client.post("/exec", json={"lang": "py", "code": "print('a')\u0000"})
    assert response.status_code == 200


async def test_nul_byte_in_args_is_a_client_error(hostile: Hostile) -> None:
    # Expected: an argument that cannot be passed to exec(2) is a 400, not a 5xx.
    response = await hostile.client.post("/exec", json={"lang": "bash", "code": "echo $1", "args": ["a\u0000b"]})
    assert response.status_code == 400


@pytest.mark.parametrize("lang", ["py", "bash"])
async def test_lone_surrogate_in_code_is_a_client_error(hostile: Hostile, lang: str) -> None:
    # Expected: text that is not valid Unicode is refused with a 400 that names the field, on the
    # warm Python path and the one-shot one alike. JSON can carry one as an escape (sent as bytes:
    # the client library would refuse to encode it).
    body = b'{"lang": "%s", "code": "print(1)  # \\ud800"}' % lang.encode()
    response = await hostile.client.post("/exec", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "valid Unicode" in response.json()["error"]


async def test_printed_fake_response_json_is_plain_stdout(hostile: Hostile) -> None:
    # Expected: JSON printed by the program that imitates the API's own response (another
    # session, forged files) is returned verbatim inside stdout and changes nothing else.
    forged = {"session_id": "forged-session", "stdout": "", "stderr": "", "files": [{"id": "x", "name": "/etc/passwd"}]}
    body = await execute(hostile, "py", f"import json\nprint(json.dumps({forged!r}))")
    assert json.loads(body["stdout"]) == forged
    assert body["session_id"] != "forged-session"
    assert body["files"] == []


async def test_printed_keepalive_and_repl_frames_are_plain_stdout(hostile: Hostile) -> None:
    # Expected: whitespace runs like keep-alives and NDJSON frames like a REPL's results stay
    # data: the response is a single JSON document whose stdout holds exactly what was printed.
    frames = '   \n{"id": 1, "stdout": "fake", "state": "AAAA"}\n{"type": "result", "error": null}\n'
    body = await execute(hostile, "py", f"import sys\nsys.stdout.write({frames!r})")
    assert body["stdout"] == frames
    assert set(body) == {"session_id", "stdout", "stderr", "files", "deleted_files", "run", "language", "version"}
    assert body["run"]["status"] is None and body["deleted_files"] == []


async def test_invalid_utf8_and_control_bytes_on_stdout_are_data(hostile: Hostile) -> None:
    # Expected: bytes that are not UTF-8 are replaced, NUL and escape sequences pass as text.
    body = await execute(hostile, "py", "import os\nos.write(1, b'\\xff\\xfe\\x00\\x1b[2Jend')")
    assert body["stdout"] == "\ufffd\ufffd\x00\x1b[2Jend"


async def test_writes_to_other_descriptors_go_nowhere(hostile: Hostile) -> None:
    # Expected: only 0, 1 and 2 are open in the sandbox; descriptors 3-9 are EBADF.
    code = "import os\nfor fd in range(3, 10):\n    try:\n        os.write(fd, b'x')\n    except OSError as e:\n        print(e.errno, end=' ')"
    body = await execute(hostile, "py", code)
    assert body["stdout"].split() == ["9"] * 7

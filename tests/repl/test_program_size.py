"""Every Python program up to the code cap (1 MiB of UTF-8) runs on the warm path; one byte over is a 413."""

from __future__ import annotations

import json

import httpx
import pytest

from codeapi.http.routes.exec import MAX_CODE_BYTES

LITERAL = 'text = "{}"\nprint(len(text))\n'


def program_of(size_bytes: int, char: str) -> tuple[str, int]:
    """A program of exactly ``size_bytes`` UTF-8 bytes (up to one ``char``) and the length it prints."""
    overhead = len(LITERAL.format("").encode())
    count = (size_bytes - overhead) // len(char.encode())
    code = LITERAL.format(char * count)
    return code + " " * (size_bytes - len(code.encode())), count


async def post_raw(client: httpx.AsyncClient, code: str) -> httpx.Response:
    """As LibreChat sends it: JSON with the text as UTF-8, not as \\u escapes."""
    body = json.dumps({"lang": "py", "code": code}, ensure_ascii=False).encode()
    return await client.post("/exec", content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("size_bytes", "char"),
    [(300 * 1024, "a"), (200 * 1024, "é"), (MAX_CODE_BYTES, "a"), (MAX_CODE_BYTES, "é")],
    ids=["300KiB-ascii", "200KiB-accented", "cap-ascii", "cap-accented"],
)
async def test_a_python_program_of_any_size_up_to_the_cap_runs(
    warm: httpx.AsyncClient, size_bytes: int, char: str
) -> None:
    code, count = program_of(size_bytes, char)
    assert len(code.encode()) == size_bytes
    response = await post_raw(warm, code)
    assert response.status_code == 200, response.text
    assert response.json()["stdout"] == f"{count}\n"


async def test_a_python_program_over_the_cap_is_refused_with_413(warm: httpx.AsyncClient) -> None:
    code, _ = program_of(MAX_CODE_BYTES + 1, "a")
    response = await post_raw(warm, code)
    assert response.status_code == 413
    assert "maximum size" in response.json()["error"]

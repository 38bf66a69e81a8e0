"""Every language runs a program at the code cap one-shot (the source goes by file, never argv)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from codeapi.http.routes.exec import MAX_CODE_BYTES
from codeapi.languages import LANGUAGES, get_language
from tests.conftest import ClientFactory, run

LINE_COMMENT = {"py": "#", "r": "#", "bash": "#", "f90": "!"}  # every other language: //


def padded_hello(lang: str) -> tuple[str, str]:
    """The language's hello program behind comment lines, a little under MAX_CODE_BYTES in all."""
    code, expected = get_language(lang).hello
    line = f"{LINE_COMMENT.get(lang, '//')} {'p' * 900}\n"
    padding = line * ((MAX_CODE_BYTES - len(code.encode()) - 200) // len(line))
    if code.startswith("<?php"):
        return code.replace("<?php", "<?php\n" + padding, 1), expected
    return padding + code, expected


@pytest.fixture(scope="module")
async def one_shot(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(REPL_ENABLED="false", MAX_EXECUTION_TIME=60) as client:
        yield client


@pytest.mark.parametrize("lang", [spec.id for spec in LANGUAGES])
async def test_a_program_just_under_the_code_cap_runs(one_shot: httpx.AsyncClient, lang: str) -> None:
    code, expected = padded_hello(lang)
    assert MAX_CODE_BYTES - 2048 < len(code.encode()) <= MAX_CODE_BYTES

    body = await run(one_shot, lang, code)

    assert body["stdout"] == expected, body["stderr"]

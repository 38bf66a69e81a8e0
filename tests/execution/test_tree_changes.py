"""A program may reshape /mnt/data any way it likes: the session's stored names stay stageable.

Each run goes through the real app and sandbox (both backends) and must answer 200, never 500.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from codeapi.execution.files import OutputChanged, read_output, walk_outputs
from tests.conftest import run


@pytest.mark.parametrize("lang", ["bash", "py"])
async def test_a_file_replaced_by_a_same_named_directory_leaves_the_session_usable(
    client: httpx.AsyncClient, lang: str
) -> None:
    first = await run(client, "bash", "echo a > x; echo kept > other.txt")
    session_id = first["session_id"]
    reshape = {
        "bash": "rm x; mkdir x; echo b > x/inner",
        "py": "import os\nos.remove('x'); os.mkdir('x'); open('x/inner', 'w').write('b\\n')",
    }[lang]
    await run(client, lang, reshape, session_id=session_id)

    later = await run(client, "bash", "find . -type f | sort; cat x/inner", session_id=session_id)

    assert later["stdout"] == "./other.txt\n./x/inner\nb\n"  # the newer tree wins over the older file
    back = await run(client, "bash", "rm -r x; echo c > x", session_id=session_id)
    assert back["session_id"] == session_id
    again = await run(client, "bash", "cat x", session_id=session_id)
    assert again["stdout"] == "c\n"


async def test_a_directory_replaced_by_a_same_named_file_leaves_the_session_usable(client: httpx.AsyncClient) -> None:
    first = await run(client, "bash", "mkdir -p d/e; echo deep > d/e/f")
    session_id = first["session_id"]
    await run(client, "bash", "rm -r d; echo flat > d", session_id=session_id)

    later = await run(client, "bash", "find . -type f | sort; cat d", session_id=session_id)

    assert later["stdout"] == "./d\nflat\n"


CHURN = """
import os, threading
def churn():
    n = 0
    while True:
        n += 1
        try:
            with open('churn.txt', 'w') as out:
                out.write('x' * (n % 7919) * 300)
            if n % 3 == 0:
                os.replace('churn.txt', 'moved.txt')
            if n % 5 == 0:
                os.makedirs('tree/a', exist_ok=True)
                open('tree/a/b', 'w').write(str(n))
            if n % 7 == 0 and os.path.isdir('tree'):
                os.rename('tree', f'gone{n % 2}') if not os.path.exists(f'gone{n % 2}') else None
        except OSError:
            pass
threading.Thread(target=churn, daemon=True).start()
print('churning')
"""


async def test_files_changing_while_outputs_are_collected_never_fail_the_call(client: httpx.AsyncClient) -> None:
    """A thread left running in a kept Python sandbox rewrites, moves and removes files throughout."""
    session_id = (await run(client, "py", CHURN))["session_id"]
    for _ in range(12):
        later = await run(client, "py", CHURN, session_id=session_id)  # each call's collection races a thread
        assert later["stdout"] == "churning\n"
        stored = [item["name"] for item in later["files"]]
        assert len(stored) == len(set(stored))


async def test_a_file_changed_after_the_walk_is_not_stored(tmp_path: Path) -> None:
    (tmp_path / "report.txt").write_text("first")
    [found], _ = walk_outputs(tmp_path, max_file_bytes=1024 * 1024)
    (tmp_path / "report.txt").write_text("other")

    with pytest.raises(OutputChanged):
        async for _ in read_output(tmp_path, "report.txt", found.fingerprint):
            pass
    (tmp_path / "report.txt").unlink()
    with pytest.raises(OutputChanged):
        async for _ in read_output(tmp_path, "report.txt", found.fingerprint):
            pass

"""Output trees user code builds to break collection: deep nesting and names that are not UTF-8.

Each run goes through the real app and sandbox; collection must answer 200 with a note, never 500.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from codeapi.execution.files import MAX_DEPTH, walk_outputs
from tests.conftest import run

DEEP_TREE = """
import os
for level in range(1000):
    os.mkdir('d')
    os.chdir('d')
    if level == 4:
        open('five.txt', 'w').write('five')
open('bottom.txt', 'w').write('deep')
os.chdir('/mnt/data')
open('top.txt', 'w').write('top')
print('built')
"""


async def test_a_thousand_nested_directories_are_refused_with_a_note(client: httpx.AsyncClient) -> None:
    body = await run(client, "py", DEEP_TREE)
    assert body["stdout"] == "built\n", body["stderr"]
    names = sorted(item["name"] for item in body["files"])
    assert names == ["d/d/d/d/d/five.txt", "top.txt"]
    assert f"nested deeper than {MAX_DEPTH} directories" in body["stderr"]
    assert "bottom.txt" not in body["stderr"]  # the walk stopped at the limit, it did not descend


async def test_a_file_name_that_is_not_utf8_is_refused_with_a_note(client: httpx.AsyncClient) -> None:
    code = "open(b'\\xff.txt', 'w').write('x')\nimport os\nos.mkdir(b'\\xfe')\nopen(b'\\xfe/in.txt', 'w')\nopen('ok.txt', 'w').write('ok')"
    body = await run(client, "py", code)
    assert [item["name"] for item in body["files"]] == ["ok.txt"]
    assert "\ufffd.txt (the file name is not valid UTF-8)" in body["stderr"]
    assert "in.txt" not in body["stderr"]
    # The session stays usable: the next run sees the stored file.
    again = await run(client, "bash", "cat ok.txt", session_id=body["session_id"])
    assert again["stdout"] == "ok"


def test_the_walk_holds_at_most_one_descriptor_per_allowed_level(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    fd = os.open(data, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(300):  # deep enough that recursion used to be the risk, shallow enough for rmtree
        os.mkdir("d", dir_fd=fd)
        next_fd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = next_fd
    os.close(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)
    for index in range(200):  # wide as well as deep: siblings are never open at the same time
        (data / f"w{index:03}").mkdir()
        (data / f"w{index:03}" / "f").write_text("x")
    before = len(os.listdir("/proc/self/fd"))
    found, rejected = walk_outputs(data, max_file_bytes=1024 * 1024)
    assert len(os.listdir("/proc/self/fd")) == before
    assert len(found) == 200
    assert [item.reason for item in rejected] == [f"nested deeper than {MAX_DEPTH} directories"]
    assert rejected[0].path.count("/") == MAX_DEPTH - 1

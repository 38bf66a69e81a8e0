"""Host-side collection of what a program leaves in /mnt/data: links, special files and odd names.

The API reads /mnt/data as root after the run, so every trick here tries to make it read (and
store, and serve) something the program could not read itself, or to make the walk hang or crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import upload
from tests.security.conftest import Hostile, execute


async def download_all(hostile: Hostile, body: dict[str, Any]) -> list[bytes]:
    contents = []
    for item in body["files"]:
        response = await hostile.client.get(f"/download/{item['session_id']}/{item['id']}")
        assert response.status_code == 200
        contents.append(response.content)
    return contents


async def test_symlink_to_etc_passwd_is_not_collected(hostile: Hostile) -> None:
    # Expected: an output that is a symlink is never followed, so the host's /etc/passwd (which
    # the API could read as root) is not stored or served.
    body = await execute(hostile, "bash", "ln -s /etc/passwd report.txt; ln -s /etc/shadow shadow.txt; echo done")
    assert body["files"] == []
    host_passwd = Path("/etc/passwd").read_bytes()
    assert all(host_passwd not in content for content in await download_all(hostile, body))


async def test_symlink_to_host_directory_is_not_walked(hostile: Hostile) -> None:
    # Expected: a directory symlink to / (or /etc) is not descended into.
    body = await execute(hostile, "bash", "ln -s / rootfs; ln -s /etc etc; echo real > real.txt")
    assert [item["name"] for item in body["files"]] == ["real.txt"]


async def test_hard_link_to_host_file_is_impossible(hostile: Hostile) -> None:
    # Expected: /mnt/data is its own filesystem, so linking a host file into it fails (EXDEV).
    body = await execute(hostile, "bash", "ln /etc/passwd p; ln /usr/bin/bash b; ls")
    assert body["stderr"].count("Invalid cross-device link") == 2
    assert body["files"] == []


async def test_hard_linked_outputs_are_refused(hostile: Hostile) -> None:
    # Expected: a file with several links (here an input and its twin) is reported, not collected.
    uploaded = await upload(hostile.client, "input.txt", b"original")
    refs = [{"id": uploaded["files"][0]["fileId"], "session_id": uploaded["session_id"], "name": "input.txt"}]
    body = await execute(hostile, "bash", "ln input.txt twin.txt; echo ok", files=refs)
    assert body["files"] == []
    assert "twin.txt (hard-linked files are not collected)" in body["stderr"]


async def test_fifo_named_like_an_output_does_not_hang_collection(hostile: Hostile) -> None:
    # Expected: the walk opens entries non-blocking and checks the type, so a FIFO with a data
    # file's name is reported and skipped at once instead of blocking the API forever.
    body = await execute(hostile, "bash", "mkfifo results.csv; mkdir sub; mkfifo sub/plot.png; echo ok")
    assert body["files"] == []
    assert "results.csv (not a regular file)" in body["stderr"]
    assert "sub/plot.png (not a regular file)" in body["stderr"]


async def test_unix_socket_is_not_collected(hostile: Hostile) -> None:
    # Expected: a listening socket file cannot be opened as a file; it is skipped.
    code = "import socket\nserver = socket.socket(socket.AF_UNIX)\nserver.bind('data.json')\nprint('bound')"
    body = await execute(hostile, "py", code)
    assert body["stdout"] == "bound\n"
    assert body["files"] == []


async def test_huge_sparse_file_cannot_be_made(hostile: Hostile) -> None:
    # Expected: a terabyte sparse file fails with EFBIG (the file size rlimit also caps
    # ftruncate), so nothing can be collected that expands to more than MAX_FILE_SIZE_MB.
    code = "f = open('sparse.bin', 'wb')\ntry:\n    f.truncate(1 << 40)\nexcept OSError as error:\n    print(error.strerror)"
    body = await execute(hostile, "py", code)
    assert body["stdout"] == "File too large\n"
    assert all(len(content) <= 8 * 1024 * 1024 for content in await download_all(hostile, body))


async def test_output_that_grows_after_collection_is_not_served(hostile: Hostile) -> None:
    # Expected: only regular, single-link, size-checked files are stored; nothing keeps writing
    # after the run (the jail is gone), so what is served is what was walked.
    body = await execute(hostile, "bash", "(sleep 0.3; echo late >> out.txt) & echo early > out.txt")
    contents = await download_all(hostile, body)
    assert contents in ([], [b"early\n"])


async def test_many_outputs_are_capped_at_max_output_files(hostile: Hostile) -> None:
    # Expected: hundreds of files are walked, five are stored, the rest are reported.
    body = await execute(hostile, "bash", "for i in $(seq 300); do echo $i > f$i.txt; done")
    assert len(body["files"]) == 5
    assert "more than 5 output files" in body["stderr"]


async def test_hidden_files_are_not_collected(hostile: Hostile) -> None:
    # Expected: dot-files and dot-directories (caches, configs) never become outputs.
    body = await execute(hostile, "bash", "echo x > .env; mkdir .git; echo y > .git/config; echo z > visible.txt")
    assert [item["name"] for item in body["files"]] == ["visible.txt"]


async def test_locked_directory_does_not_block_cleanup(hostile: Hostile) -> None:
    # Expected: a mode-000 directory tree is the program's own data (the API reads it as root) and is
    # still removed afterwards: the containment check finds no job directory left.
    body = await execute(
        hostile, "bash", "mkdir -p locked/inner; echo x > locked/inner/f; chmod -R 000 locked; echo ok"
    )
    assert body["stdout"] == "ok\n"
    assert await download_all(hostile, body) == [b"x\n"]


async def test_deeply_nested_directories_do_not_break_collection(hostile: Hostile) -> None:
    # Expected: a 1000-level directory chain is walked (or cut off) without a 5xx, and without
    # holding a descriptor per level open in the API process.
    code = "import os\nfor _ in range(1000):\n    os.mkdir('d')\n    os.chdir('d')\nopen('leaf.txt', 'w').write('x')"
    response = await hostile.client.post("/exec", json={"lang": "py", "code": code})
    assert response.status_code == 200


async def test_output_name_that_is_not_utf8_does_not_break_collection(hostile: Hostile) -> None:
    # Expected: a file name with invalid UTF-8 bytes is skipped or renamed, never a 5xx.
    response = await hostile.client.post(
        "/exec", json={"lang": "py", "code": "open(b'bad\\xff.txt', 'wb').write(b'x')\nopen('ok.txt', 'w').write('y')"}
    )
    assert response.status_code == 200

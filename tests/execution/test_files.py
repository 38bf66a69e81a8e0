"""Host-side collection of outputs never follows links and refuses what is not a plain small file."""

from __future__ import annotations

import os
from pathlib import Path

from codeapi.execution.files import walk_outputs


def test_walk_skips_symlinks_fifos_hardlinks_hidden_and_oversized(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "ok.txt").write_text("fine")
    (data / "sub" / "deep.txt").write_text("deep")
    (data / "link").symlink_to(outside / "secret")
    (data / "dirlink").symlink_to(outside)
    os.mkfifo(data / "pipe")
    os.link(outside / "secret", data / "hard")
    (data / ".hidden").write_text("no")
    with open(data / "sparse.bin", "wb") as sparse:
        sparse.truncate(10 * 1024 * 1024)
    found, rejected = walk_outputs(data, max_file_bytes=1024 * 1024)
    assert sorted(item.path for item in found) == ["ok.txt", "sub/deep.txt"]
    reasons = {item.path: item.reason for item in rejected}
    assert set(reasons) == {"pipe", "hard", "sparse.bin"}
    assert "larger than" in reasons["sparse.bin"]

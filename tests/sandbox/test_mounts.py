"""The per-job tmpfs quota: mounted with its limits, found again after a crash, unmounted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codeapi.sandbox import mounts


def test_mount_paths_with_spaces_are_decoded() -> None:
    assert mounts.decode_mount_path("/a\\040b/c\\011d") == "/a b/c\td"


def test_quota_tmpfs_limits_size_and_inodes_and_is_found_below_its_base(tmp_path: Path) -> None:
    target = tmp_path / "job" / "files"
    target.mkdir(parents=True)
    mounts.mount_quota(target, 1)
    try:
        assert mounts.mounts_below(tmp_path) == [target]
        stats = os.statvfs(target)
        assert stats.f_blocks * stats.f_frsize == 1024 * 1024
        assert stats.f_files == 1024
        with pytest.raises(OSError, match="No space left"), open(target / "big", "wb") as big:
            big.write(b"x" * (2 * 1024 * 1024))
    finally:
        mounts.unmount(target)
    assert mounts.mounts_below(tmp_path) == []


def test_unmounting_what_is_not_mounted_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot unmount"):
        mounts.unmount(tmp_path)

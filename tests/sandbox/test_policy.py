"""The system views: the minimal one, the host view used without filesystem isolation, and its masks."""

from __future__ import annotations

from pathlib import Path

from codeapi.sandbox.policy import Bind, host_view_binds, mask_point, masked_paths, system_binds


def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for name in ("usr", "etc", "var/lib/codeapi/data", "opt/runtime", "home/alice", "proc", "sys", "tmp", "mnt"):
        (root / name).mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    return root


def test_minimal_view_adds_the_synthetic_identity_files(tmp_path: Path) -> None:
    binds = system_binds(tmp_path)
    assert Bind(Path("/usr"), "/usr") in binds
    assert [bind.dst for bind in binds[-3:]] == ["/etc/passwd", "/etc/group", "/etc/hosts"]


def test_host_view_skips_kernel_and_volatile_directories(tmp_path: Path) -> None:
    destinations = {bind.dst for bind in host_view_binds(tmp_path / "system", fake_root(tmp_path))}
    assert {"/usr", "/etc", "/var"} <= destinations
    assert not {"/proc", "/sys", "/tmp", "/mnt", "/bin"} & destinations


def test_host_view_binds_opt_and_home_entry_by_entry(tmp_path: Path) -> None:
    # nsjail must be able to create /opt/python and /home/sandbox next to the host's entries.
    destinations = {bind.dst for bind in host_view_binds(tmp_path / "system", fake_root(tmp_path))}
    assert {"/opt/runtime", "/home/alice"} <= destinations
    assert not {"/opt", "/home"} & destinations


def test_host_view_still_ends_with_the_identity_files(tmp_path: Path) -> None:
    binds = host_view_binds(tmp_path / "system", fake_root(tmp_path))
    assert [bind.dst for bind in binds[-3:]] == ["/etc/passwd", "/etc/group", "/etc/hosts"]


def test_service_state_inside_the_view_is_masked(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    for directory in ("var", "var/lib", "var/lib/codeapi"):
        (root / directory).chmod(0o755)
    data = root / "var/lib/codeapi/data"
    view = (Bind(root / "var", "/var"),)
    assert masked_paths(view, (data, tmp_path / "elsewhere")) == (str(data),)


def test_mask_moves_up_to_the_first_directory_others_cannot_list(tmp_path: Path) -> None:
    bound = tmp_path / "var"
    private = bound / "a" / "b"
    (private / "c").mkdir(parents=True)
    private.chmod(0o711)
    assert mask_point(private / "c", bound) == private
    private.chmod(0o755)
    assert mask_point(private / "c", bound) == private / "c"

"""The nsjail command line for one job: the security-relevant flags, in the order nsjail needs."""

from __future__ import annotations

from pathlib import Path

from codeapi.sandbox.nsjail import render
from codeapi.sandbox.policy import SECCOMP_POLICY, Bind, Isolation, SandboxJob, SandboxLimits

LIMITS = SandboxLimits(time_s=2.5, memory_mb=256, processes=32, file_size_mb=8, output_bytes=1024, tmpfs_mb=32)
JOB = SandboxJob(
    job_id="j1",
    argv=("/bin/true",),
    uid=42001,
    work_dir=Path("/jobs/j1/files/data"),
    code_dir=Path("/jobs/j1/files/code"),
    home_dir=Path("/jobs/j1/files/home"),
    log_file=Path("/jobs/j1/nsjail.log"),
    limits=LIMITS,
)
MINIMAL = Isolation((Bind(Path("/usr"), "/usr"),))


def flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[index + 1] for index, item in enumerate(argv) if item == flag]


def test_identity_maps_only_the_jobs_uid() -> None:
    argv = render("nsjail", JOB, MINIMAL)
    assert flag_values(argv, "--user") == ["42001:42001:1"]
    assert flag_values(argv, "--group") == ["42001:42001:1"]


def test_seccomp_policy_is_passed_when_given() -> None:
    assert flag_values(render("nsjail", JOB, MINIMAL, SECCOMP_POLICY), "--seccomp_policy") == [str(SECCOMP_POLICY)]
    assert "--seccomp_policy" not in render("nsjail", JOB, MINIMAL)
    assert SECCOMP_POLICY.is_file()


def test_network_is_isolated_unless_switched_off() -> None:
    assert "--disable_clone_newnet" not in render("nsjail", JOB, MINIMAL)
    shared = Isolation(MINIMAL.binds, own_network=False)
    assert "--disable_clone_newnet" in render("nsjail", JOB, shared)


def test_nsjail_leaves_cgroups_to_the_runner() -> None:
    # The runner starts nsjail inside the job's cgroup; nsjail's own cgroup flags are v1-only and
    # would name a child cgroup after its host pid, visible in the jail.
    assert not [flag for flag in render("nsjail", JOB, MINIMAL) if flag.startswith("--cgroup")]
    assert "--disable_clone_newcgroup" not in render("nsjail", JOB, MINIMAL)


def test_tmpfs_mounts_cap_size_and_inodes() -> None:
    mounts = flag_values(render("nsjail", JOB, MINIMAL), "--mount")
    assert f"none:/tmp:tmpfs:size={32 << 20},nr_inodes=1024" in mounts
    assert all("nr_inodes=" in mount for mount in mounts)


def test_system_view_is_read_only_and_work_dirs_are_not() -> None:
    argv = render("nsjail", JOB, MINIMAL)
    assert "/usr:/usr" in flag_values(argv, "--bindmount_ro")
    assert "/jobs/j1/files/code:/code" in flag_values(argv, "--bindmount_ro")
    assert "/jobs/j1/files/data:/mnt/data" in flag_values(argv, "--bindmount")


def test_masks_come_after_the_binds_they_cover() -> None:
    isolation = Isolation((Bind(Path("/var"), "/var"),), masked=("/var/lib/codeapi",))
    argv = render("nsjail", JOB, isolation)
    mask = argv.index("none:/var/lib/codeapi:tmpfs:size=4096,nr_inodes=1,mode=000")
    assert argv.index("/var:/var") < mask


def test_time_limit_backstop_is_above_the_deadline() -> None:
    assert flag_values(render("nsjail", JOB, MINIMAL), "--time_limit") == ["5"]


def test_program_argv_comes_last() -> None:
    argv = render("nsjail", JOB, MINIMAL)
    assert argv[-2:] == ["--", "/bin/true"]

"""Render a ``SandboxJob`` into an nsjail command line. Pure: no I/O, so it is tested by golden output."""

from __future__ import annotations

import math
from pathlib import Path

from codeapi.sandbox.cgroups import JobCgroup
from codeapi.sandbox.policy import (
    BASE_ENV,
    CODE_DIR,
    DEVICES,
    HOME_DIR,
    MERGED_USR_SYMLINKS,
    WORK_DIR,
    Bind,
    SandboxJob,
)

MB = 1024 * 1024
CHILD_HEADROOM_MB = 64


def render(
    nsjail: str,
    job: SandboxJob,
    system_binds: tuple[Bind, ...],
    cgroup: JobCgroup | None,
    seccomp_policy: Path | None = None,
) -> list[str]:
    limits = job.limits
    # nsjail's own time limit is a backstop in whole seconds; the runner kills at the exact deadline.
    backstop_s = math.ceil(limits.time_s) + 2
    uid = str(job.uid)
    argv = [
        nsjail,
        "--mode", "o",
        "--log", str(job.log_file),
        "--hostname", "sandbox",
        "--cwd", WORK_DIR,
        "--user", f"{uid}:{uid}:1",
        "--group", f"{uid}:{uid}:1",
        "--time_limit", str(backstop_s),
        "--rlimit_as", "inf",
        "--rlimit_cpu", str(backstop_s),
        "--rlimit_fsize", str(limits.file_size_mb),
        "--rlimit_nofile", str(limits.open_files),
        "--rlimit_nproc", "soft",
        "--rlimit_stack", "soft",
        "--rlimit_core", "0",
        "--rlimit_memlock", "0",
        "--rlimit_msgqueue", "0",
        "--nice_level", "5",
    ]  # fmt: skip
    if cgroup is not None:
        # The job's parent cgroup holds the real limit (so its failcnt shows an OOM kill); nsjail's
        # own child cgroup gets headroom above it and therefore never triggers first.
        argv += [
            "--cgroup_mem_max", str((limits.memory_mb + CHILD_HEADROOM_MB) * MB),
            "--cgroup_mem_parent", cgroup.name,
            "--cgroup_pids_max", str(limits.processes),
            "--cgroup_pids_parent", cgroup.name,
            "--cgroup_cpu_ms_per_sec", "1000",
            "--cgroup_cpu_parent", cgroup.name,
        ]  # fmt: skip
    if job.network:
        argv.append("--disable_clone_newnet")
    if seccomp_policy is not None:
        argv += ["--seccomp_policy", str(seccomp_policy)]
    for target, link in MERGED_USR_SYMLINKS:
        argv += ["--symlink", f"{target}:{link}"]
    for device in DEVICES:
        argv += ["--bindmount" if device == "/dev/null" else "--bindmount_ro", f"{device}:{device}"]
    argv += [
        "--mount", f"none:/tmp:tmpfs:size={limits.tmpfs_mb * MB}",
        "--mount", f"none:/dev/shm:tmpfs:size={min(limits.tmpfs_mb, 64) * MB}",
        "--bindmount", f"{job.work_dir}:{WORK_DIR}",
        "--bindmount" if job.code_writable else "--bindmount_ro", f"{job.code_dir}:{CODE_DIR}",
        "--bindmount", f"{job.home_dir}:{HOME_DIR}",
    ]  # fmt: skip
    for bind in (*system_binds, *job.binds):
        argv += ["--bindmount" if bind.writable else "--bindmount_ro", f"{bind.src}:{bind.dst}"]
    for fd in job.pass_fds:
        argv += ["--pass_fd", str(fd)]
    for key, value in {**BASE_ENV, **job.env}.items():
        argv += ["--env", f"{key}={value}"]
    argv += ["--", *job.argv]
    return argv

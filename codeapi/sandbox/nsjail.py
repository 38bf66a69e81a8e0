"""Render a ``SandboxJob`` into an nsjail command line. Pure: no I/O, so it is tested by golden output."""

from __future__ import annotations

import math
from pathlib import Path

from codeapi.sandbox.policy import (
    BASE_ENV,
    CODE_DIR,
    DEV_SYMLINKS,
    DEVICES,
    HOME_DIR,
    MERGED_USR_SYMLINKS,
    WORK_DIR,
    Isolation,
    SandboxJob,
    tmpfs_inodes,
)
from codeapi.units import MB

NSENTER = "/usr/bin/nsenter"
SHM_MAX_MB = 64


def tmpfs_options(size_mb: int) -> str:
    return f"size={size_mb * MB},nr_inodes={tmpfs_inodes(size_mb)}"


def render(nsjail: str, job: SandboxJob, isolation: Isolation, seccomp_policy: Path | None = None) -> list[str]:
    """The job's cgroup is not nsjail's business: the runner starts nsjail inside it (cgroups.py)."""
    # nsjail cannot join a namespace: nsenter puts it (and so the jail) into the prepared one.
    entered = [] if job.network_fd is None else [NSENTER, f"--net=/proc/self/fd/{job.network_fd}", "--"]
    return [
        *entered,
        *process_flags(nsjail, job),
        *(["--disable_clone_newnet"] if job.network_fd is not None or not isolation.own_network else []),
        *(["--seccomp_policy", str(seccomp_policy)] if seccomp_policy is not None else []),
        *mount_flags(job, isolation),
        *env_flags(job),
        "--",
        *job.argv,
    ]


def process_flags(nsjail: str, job: SandboxJob) -> list[str]:
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
    for fd in job.pass_fds:
        argv += ["--pass_fd", str(fd)]
    return argv


def mount_flags(job: SandboxJob, isolation: Isolation) -> list[str]:
    """Order matters: nsjail mounts in argument order, so a mask comes after the bind it covers."""
    argv: list[str] = []
    for target, link in (*MERGED_USR_SYMLINKS, *DEV_SYMLINKS):
        argv += ["--symlink", f"{target}:{link}"]
    for device in DEVICES:
        argv += ["--bindmount" if device == "/dev/null" else "--bindmount_ro", f"{device}:{device}"]
    tmpfs_mb = job.limits.tmpfs_mb
    argv += [
        "--mount", f"none:/tmp:tmpfs:{tmpfs_options(tmpfs_mb)}",
        "--mount", f"none:/dev/shm:tmpfs:{tmpfs_options(min(tmpfs_mb, SHM_MAX_MB))}",
        "--bindmount", f"{job.work_dir}:{WORK_DIR}",
        "--bindmount" if job.code_writable else "--bindmount_ro", f"{job.code_dir}:{CODE_DIR}",
        "--bindmount", f"{job.home_dir}:{HOME_DIR}",
    ]  # fmt: skip
    for bind in (*isolation.binds, *job.binds):
        argv += ["--bindmount" if bind.writable else "--bindmount_ro", f"{bind.src}:{bind.dst}"]
    for path in isolation.masked:
        # An empty, inaccessible tmpfs: mode 000 and no room, so nothing below it can be read.
        argv += ["--mount", f"none:{path}:tmpfs:size=4096,nr_inodes=1,mode=000"]
    return argv


def env_flags(job: SandboxJob) -> list[str]:
    argv: list[str] = []
    for key, value in {**BASE_ENV, **job.env}.items():
        argv += ["--env", f"{key}={value}"]
    return argv

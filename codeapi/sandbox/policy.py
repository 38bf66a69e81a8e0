"""What every sandbox looks like, as data: the system view, devices, identity and limits.

Everything here is static or per-job data; ``nsjail.py`` renders it into nsjail flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

WORK_DIR = "/mnt/data"  # the session's files; the current directory of every job
CODE_DIR = "/code"  # the job's source and build products; writable only while compiling
HOME_DIR = "/home/sandbox"

# Read-only system view. /usr carries every Debian runtime; the merged-usr symlinks make
# /bin, /lib, ... resolve inside it. Only the /etc pieces runtimes need are visible.
SYSTEM_READONLY_BINDS: tuple[str, ...] = (
    "/usr",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/fonts",
    "/etc/java-17-openjdk",
    "/etc/php",
    "/etc/R",
    "/etc/ldc2.conf",
)
MERGED_USR_SYMLINKS: tuple[tuple[str, str], ...] = (
    ("usr/bin", "/bin"),
    ("usr/lib", "/lib"),
    ("usr/lib64", "/lib64"),
    ("usr/sbin", "/sbin"),
)
DEVICES: tuple[str, ...] = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")

BASE_ENV: dict[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": HOME_DIR,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "USER": "sandbox",
}


@dataclass(frozen=True)
class Bind:
    src: Path
    dst: str
    writable: bool = False


def system_binds(system_dir: Path) -> tuple[Bind, ...]:
    """The read-only host paths every sandbox sees (those present on this host) plus passwd/group."""
    present = tuple(Bind(Path(path), path) for path in SYSTEM_READONLY_BINDS if Path(path).exists())
    return (*present, Bind(system_dir / "passwd", "/etc/passwd"), Bind(system_dir / "group", "/etc/group"))


class Termination(StrEnum):
    EXITED = "exited"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    OUTPUT_LIMIT = "output_limit"
    SIGNALLED = "signalled"


@dataclass(frozen=True)
class SandboxLimits:
    time_s: float
    memory_mb: int
    processes: int
    file_size_mb: int
    output_bytes: int
    tmpfs_mb: int
    open_files: int = 1024


@dataclass(frozen=True)
class SandboxJob:
    """One sandboxed process run."""

    job_id: str
    argv: tuple[str, ...]
    uid: int
    work_dir: Path
    code_dir: Path
    home_dir: Path
    log_file: Path
    limits: SandboxLimits
    code_writable: bool = False
    binds: tuple[Bind, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    network: bool = False
    pass_fds: tuple[int, ...] = ()


@dataclass(frozen=True)
class SandboxResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    wall_ms: int
    termination: Termination

    @property
    def ok(self) -> bool:
        return self.termination is Termination.EXITED and self.exit_code == 0

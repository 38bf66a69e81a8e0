"""What every sandbox looks like, as data: the system view, devices, identity and limits.

Everything here is static or per-job data; ``nsjail.py`` renders it into nsjail flags.
docs/security.md explains what each piece stops.
"""

from __future__ import annotations

import stat
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
    "/etc/ssl/certs",  # the host's CA trust, for the egress proxy's TLS tunnels (SSL_CERT_FILE)
    "/etc/ImageMagick-6",  # policy.xml and delegates.xml: convert reads them at start
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
# /dev/fd lets bash's process substitution (<(...)) reopen the pipes it made itself. No
# /dev/stdout: stdout is a pipe the API (root) made, which the sandbox uid cannot reopen anyway.
DEV_SYMLINKS: tuple[tuple[str, str], ...] = (("/proc/self/fd", "/dev/fd"),)
# tmpfs inode cap: 16 per MB (1600 files in a 100 MB /tmp) also bounds the kernel memory inodes take.
INODES_PER_MB = 16
MIN_INODES = 1024
SECCOMP_POLICY = Path(__file__).parent / "seccomp" / "default.kafel"
# With filesystem isolation off the sandbox sees the host's top-level directories read-only,
# except these: kernel interfaces, volatile state, and the places its own mounts go.
HOST_VIEW_EXCLUDED = frozenset({"proc", "sys", "dev", "run", "tmp", "mnt", "media", "boot", "lost+found", "code"})
# Sandbox mount points live below these, so the host's entries are bound one by one instead of
# the whole directory (nsjail cannot create a mount point inside a read-only host directory).
HOST_VIEW_BY_ENTRY = frozenset({"opt", "home"})

BASE_ENV: dict[str, str] = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": HOME_DIR,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "USER": "sandbox",
}


def tmpfs_inodes(size_mb: int) -> int:
    return max(size_mb * INODES_PER_MB, MIN_INODES)


@dataclass(frozen=True)
class Bind:
    src: Path
    dst: str
    writable: bool = False


@dataclass(frozen=True)
class Isolation:
    """What every job shares: the read-only system view and whether it gets its own network."""

    binds: tuple[Bind, ...]
    masked: tuple[str, ...] = ()  # host paths inside the view hidden under an empty tmpfs
    own_network: bool = True


def system_binds(system_dir: Path) -> tuple[Bind, ...]:
    """The read-only host paths every sandbox sees (those present on this host) plus passwd/group/hosts."""
    present = tuple(Bind(Path(path), path) for path in SYSTEM_READONLY_BINDS if Path(path).exists())
    return (*present, *identity_binds(system_dir))


def identity_binds(system_dir: Path) -> tuple[Bind, ...]:
    return tuple(Bind(system_dir / name, f"/etc/{name}") for name in ("passwd", "group", "hosts"))


def host_view_binds(system_dir: Path, host_root: Path = Path("/")) -> tuple[Bind, ...]:
    """Filesystem isolation off: every top-level host directory read-only (see HOST_VIEW_EXCLUDED)."""
    binds: list[Bind] = []
    for entry in sorted(host_root.iterdir()):
        if entry.name in HOST_VIEW_EXCLUDED or entry.is_symlink() or not entry.is_dir():
            continue  # merged-usr links (/bin, /lib) are recreated by MERGED_USR_SYMLINKS
        if entry.name in HOST_VIEW_BY_ENTRY:
            binds += [Bind(child, f"/{entry.name}/{child.name}") for child in sorted(entry.iterdir())]
        else:
            binds.append(Bind(entry, f"/{entry.name}"))
    return (*binds, *identity_binds(system_dir))


def masked_paths(view: tuple[Bind, ...], private: tuple[Path, ...]) -> tuple[str, ...]:
    """The service's own state (other sessions' files) that a host view would otherwise expose."""
    hidden: list[str] = []
    for path in private:
        resolved = path.resolve()
        bound = [bind.src for bind in view if resolved.is_relative_to(bind.src)]
        if resolved.is_dir() and bound:
            hidden.append(str(mask_point(resolved, bound[0])))
    return tuple(dict.fromkeys(hidden))


def mask_point(path: Path, bind_src: Path) -> Path:
    """The path itself, or its first directory below the bind that others cannot list: nsjail
    creates the mount point as a user without rights on host-owned directories, so it cannot
    reach below that one (and hiding the whole unlistable directory hides the path too)."""
    inside = [ancestor for ancestor in reversed(path.parents) if ancestor.is_relative_to(bind_src)]
    for directory in (*inside, path):
        if directory != bind_src and not directory.stat().st_mode & stat.S_IROTH:
            return directory
    return path


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
    network_fd: int | None = None  # a network namespace to run in (egress.netns), instead of an empty one
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
    # From the job's cgroup, where the host counts them (None: unknown): CPU time of all its processes
    # and its highest memory use, page cache of its files included.
    cpu_ms: int | None = None
    memory_peak_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return self.termination is Termination.EXITED and self.exit_code == 0

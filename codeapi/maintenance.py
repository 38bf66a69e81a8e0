"""Install-time tasks run by scripts/install: host preparation, the Go cache, the language check.

A composition root like app.py: it builds the same runner (codeapi/wiring/) and uses the same language
table as the API, so an install that passes here runs the same way under the server.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from dataclasses import replace
from pathlib import Path

from codeapi.config import Settings
from codeapi.execution.program import Program, ProgramRunner
from codeapi.languages import LANGUAGES, build_cache_language
from codeapi.sandbox.host import prepare_host
from codeapi.sandbox.policy import Bind
from codeapi.sandbox.runner import NsjailRunner
from codeapi.sandbox.workspace import Workspaces
from codeapi.wiring.components import build_runner
from codeapi.wiring.limits import derive_limits

GO_WARM_TIME_S = 900
# Go caches its index of a package directory only when every file in it is older than 2 s, and
# keys the entry by the files' mtimes. A package skipped while warming (GOROOT just unpacked) is
# indexed again by a later build, which then fails on the read-only cache ("not in std").
GO_INDEX_MTIME_CUTOFF_S = 2.0


def workspaces_for(settings: Settings) -> Workspaces:
    return Workspaces(settings.sandbox.base_dir, settings.sandbox.uid, 1, settings.sandbox.workdir_size_mb)


def prepare_for_cli(settings: Settings) -> tuple[Workspaces, NsjailRunner]:
    """The host prepared as the API prepares it, and a runner like the API's."""
    workspaces = workspaces_for(settings)
    hierarchy = prepare_host(settings.sandbox, workspaces)
    return workspaces, build_runner(settings, workspaces, hierarchy)


def say(message: str) -> None:
    print(f"      {message}", flush=True)  # noqa: T201 - install-time progress


def settle_time(root: Path, age_s: float) -> float:
    """Seconds until every file under ``root`` is at least ``age_s`` old."""
    newest = max((entry.stat().st_mtime for entry in root.rglob("*") if entry.is_file()), default=0.0)
    return max(0.0, newest + age_s - time.time())


async def warm_go_cache(settings: Settings) -> int:
    """``go build std`` once, inside the sandbox with the exact GOROOT path and env later runs use."""
    spec, build_cache = build_cache_language()
    runtime = settings.sandbox.runtime_dir
    cache = runtime / build_cache.mount.relative_src
    stamp = cache / ".warmed"
    if stamp.exists():
        say(f"already done: {cache}")
        return 0
    workspaces, runner = prepare_for_cli(settings)
    cache.mkdir(parents=True, exist_ok=True)
    os.chown(cache, workspaces.first_uid, workspaces.first_uid)  # the slot's uid: another instance may hold SANDBOX_UID
    limits = replace(
        derive_limits(settings).sandbox, time_s=GO_WARM_TIME_S, memory_mb=3072, file_size_mb=512, tmpfs_mb=1024
    )
    binds = tuple(
        Bind(cache, mount.dst, writable=True) if mount == build_cache.mount else mount.bind(runtime)
        for mount in spec.mounts
    )
    sources = runtime / build_cache.sources.relative_src
    await asyncio.sleep(settle_time(sources, GO_INDEX_MTIME_CUTOFF_S + 1))
    async with workspaces.job("warm-go-cache") as dirs:
        job = dirs.job(
            "warm-go-cache",
            build_cache.fill_argv,
            limits,
            binds=binds,
            env=spec.render_env(limits.memory_mb),
        )
        result = await runner.run(job)
    if not result.ok:
        ended = f"{result.termination.value}, exit {result.exit_code}"
        say(f"{shlex.join(build_cache.fill_argv)} failed ({ended}): {result.stderr[-2000:]!r}")
        return 1
    for path in (cache, *cache.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    stamp.touch()
    say(f"Go cache ready in {cache}")
    return 0


async def check_languages(settings: Settings, only: list[str]) -> int:
    workspaces, runner = prepare_for_cli(settings)
    programs = ProgramRunner(runner, settings.sandbox.runtime_dir, derive_limits(settings).sandbox)
    failures = 0
    for spec in LANGUAGES:
        if only and spec.id not in only:
            continue
        code, expected = spec.hello
        started = time.monotonic()
        async with workspaces.job(f"check-{spec.id}") as dirs:
            ran = await programs.run(Program(spec, code, (), 60), dirs, f"check-{spec.id}")
        elapsed = time.monotonic() - started
        passed = ran.result.ok and ran.result.stdout.decode(errors="replace") == expected
        failures += not passed
        detail = "" if passed else f" -> {ran.result.termination.value} {ran.result.stderr[-500:]!r}"
        say(f"{'ok  ' if passed else 'FAIL'} {spec.id:<5} {elapsed:6.2f}s{detail}")
    return 1 if failures else 0

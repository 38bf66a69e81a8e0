"""Run one program of any language in a prepared job directory: write the source, compile, run.

Compile and run are separate sandbox jobs: the compiler may write /code, the program may not.
Both share one wall-clock budget, so a request's timeout covers the whole execution.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from codeapi.errors import InvalidRequest, RequestTooLarge
from codeapi.languages.spec import LanguageSpec, SourceFile
from codeapi.sandbox.policy import SandboxJob, SandboxLimits, SandboxResult
from codeapi.sandbox.runner import NsjailRunner
from codeapi.sandbox.workspace import JobDirs
from codeapi.units import KB


@dataclass(frozen=True)
class Program:
    spec: LanguageSpec
    code: str
    args: tuple[str, ...]
    timeout_s: float


# Arguments reach the program through execve, which refuses one string over MAX_ARG_STRLEN (32
# pages, with its NUL) and all of them over a quarter of the stack limit (2 MiB at the usual 8 MiB,
# shared with nsjail's own options and the environment). Each costs its bytes, a NUL and a pointer.
MAX_ARG_BYTES = 128 * KB - 1
MAX_ARGS_BYTES = 256 * KB
ARG_OVERHEAD_BYTES = 9


def check_program_text(code: str, args: tuple[str, ...]) -> None:
    """Refuse text no program can receive: the source is written as UTF-8, args go to execve."""
    try:
        code.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest("Code must be valid Unicode text (no lone surrogates)", field="code") from exc
    total_bytes = 0
    for arg in args:
        if "\x00" in arg:
            raise InvalidRequest("Arguments must not contain NUL characters", field="args")
        try:
            size_bytes = len(arg.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidRequest("Arguments must be valid Unicode text (no lone surrogates)", field="args") from exc
        if size_bytes > MAX_ARG_BYTES:
            raise RequestTooLarge(f"An argument exceeds the maximum size of {MAX_ARG_BYTES} bytes", field="args")
        total_bytes += size_bytes + ARG_OVERHEAD_BYTES
    if total_bytes > MAX_ARGS_BYTES:
        raise RequestTooLarge(
            f"The arguments exceed {MAX_ARGS_BYTES // KB} KiB together "
            f"(each counted with {ARG_OVERHEAD_BYTES} bytes of overhead)",
            field="args",
        )


@dataclass(frozen=True)
class ProgramResult:
    result: SandboxResult
    compile_failed: bool = False


class ProgramRunner:
    def __init__(self, runner: NsjailRunner, runtime_dir: Path, limits: SandboxLimits) -> None:
        self.runner = runner
        self.runtime_dir = runtime_dir
        self.limits = limits

    def prepare(self, program: Program, dirs: JobDirs) -> SourceFile:
        """Write the source into /code and seed the home; returns the source file."""
        spec = program.spec
        source = spec.source_for(program.code)
        source_path = dirs.code / source.name
        check_program_text(program.code, program.args)
        try:
            source_path.write_text(program.code, encoding="utf-8")
            os.chown(source_path, dirs.uid, dirs.uid)
            self.seed_home(spec, dirs)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise RequestTooLarge("The program and its inputs do not fit in the execution's disk quota") from exc
            raise
        return source

    def argv(self, program: Program, source: SourceFile) -> tuple[str, ...]:
        """The run step's command line, as the sandbox sees it."""
        return (*program.spec.render(program.spec.run_argv, source, self.limits.memory_mb), *program.args)

    async def run(self, program: Program, dirs: JobDirs, job_id: str) -> ProgramResult:
        spec = program.spec
        source = self.prepare(program, dirs)
        deadline = time.monotonic() + program.timeout_s
        if spec.compile_argv is not None:
            memory_mb = int(self.limits.memory_mb * spec.memory_factor)
            compiled = await self.runner.run(
                self.job(spec, dirs, f"{job_id}-build", spec.render(spec.compile_argv, source, memory_mb),
                         memory_mb, program.timeout_s, code_writable=True)
            )  # fmt: skip
            if not compiled.ok:
                return ProgramResult(compiled, compile_failed=True)
        remaining_s = max(deadline - time.monotonic(), 0.1)
        result = await self.runner.run(
            self.job(spec, dirs, job_id, self.argv(program, source), self.limits.memory_mb, remaining_s)
        )
        return ProgramResult(result)

    def job(
        self,
        spec: LanguageSpec,
        dirs: JobDirs,
        job_id: str,
        argv: tuple[str, ...],
        memory_mb: int,
        time_s: float,
        code_writable: bool = False,
    ) -> SandboxJob:
        limits = replace(self.limits, time_s=time_s, memory_mb=memory_mb)
        return spec.sandbox_job(dirs, job_id, argv, limits, self.runtime_dir, code_writable=code_writable)

    def seed_home(self, spec: LanguageSpec, dirs: JobDirs) -> None:
        """Copy per-language caches (matplotlib's font list) into the job's writable home."""
        for relative_src, relative_dst in spec.home_seed.items():
            src = self.runtime_dir / relative_src
            if not src.is_dir():
                continue
            dst = dirs.home / relative_dst
            shutil.copytree(src, dst, dirs_exist_ok=True)  # a kept workspace's home has it already
            for path in (dst, *dst.rglob("*")):
                os.chown(path, dirs.uid, dirs.uid)
            for parent in dst.relative_to(dirs.home).parents:
                if str(parent) != ".":
                    os.chown(dirs.home / parent, dirs.uid, dirs.uid)

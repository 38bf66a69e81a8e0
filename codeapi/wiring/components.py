"""The components that the API, the install-time tasks and the bench build alike, from the settings and ``Limits``."""

from __future__ import annotations

from dataclasses import replace

from codeapi.config import Settings
from codeapi.egress.gateway import EgressGateway, EgressPolicy, network_env
from codeapi.egress.skilldeps import SkillDeps
from codeapi.execution.program import ProgramRunner
from codeapi.execution.warm import WarmPython
from codeapi.languages import warm_repl_language
from codeapi.repl.pool import ReplPool
from codeapi.repl.sandbox import ReplLauncher
from codeapi.repl.zygote_process import ZygoteProcess
from codeapi.sandbox.cgroups import Cgroups
from codeapi.sandbox.host import resolve_nsjail
from codeapi.sandbox.policy import (
    BASE_ENV,
    SECCOMP_POLICY,
    Isolation,
    host_view_binds,
    masked_paths,
    system_binds,
)
from codeapi.sandbox.runner import NsjailRunner
from codeapi.sandbox.workspace import Workspaces
from codeapi.state.store import StateStore
from codeapi.storage.blobs.base import BlobStore
from codeapi.storage.metadata.base import MetadataStore
from codeapi.units import MB
from codeapi.wiring.limits import Limits


def build_runner(
    settings: Settings, workspaces: Workspaces, hierarchy: Cgroups | None, egress: EgressGateway | None = None
) -> NsjailRunner:
    """The one runner, with the isolation ENABLE_FILESYSTEM_ISOLATION and ENABLE_NETWORK_ISOLATION choose."""
    security = settings.security
    if security.enable_filesystem_isolation:
        isolation = Isolation(system_binds(workspaces.system_dir))
    else:
        view = host_view_binds(workspaces.system_dir)
        private = (settings.storage.data_dir, settings.sandbox.base_dir)
        isolation = Isolation(view, masked_paths(view, private))
    isolation = replace(isolation, own_network=security.enable_network_isolation)
    nsjail = resolve_nsjail(settings.sandbox.nsjail_binary)
    return NsjailRunner(nsjail, isolation, hierarchy, SECCOMP_POLICY, egress)


def build_egress(settings: Settings, policy: EgressPolicy | None) -> EgressGateway | None:
    """ENABLE_SANDBOX_NETWORK: sandboxes reach the package registries through the egress proxy."""
    if policy is None:
        return None
    skill_deps = SkillDeps(settings.egress.skill_deps_path, settings.sandbox.workdir_size_mb * MB)
    return EgressGateway(policy, skill_deps)


def build_warm_python(
    settings: Settings,
    limits: Limits,
    runner: NsjailRunner,
    workspaces: Workspaces,
    programs: ProgramRunner,
    metadata: MetadataStore,
    blobs: BlobStore,
) -> WarmPython | None:
    """The Python fast path (issue 4): warm REPL sandboxes forked from a zygote, state across calls."""
    if not settings.repl.enabled:
        return None
    spec, repl = warm_repl_language()
    runtime = settings.sandbox.runtime_dir
    zygote = ZygoteProcess(
        runtime / repl.interpreter,
        {**BASE_ENV, **spec.render_env(limits.sandbox.memory_mb), **network_env(runner.egress)},
        runtime / repl.mpl_seed,
        workspaces.system_dir / "zygote",
    )
    launcher = ReplLauncher(
        runner=runner,
        workspaces=workspaces,
        zygote=zygote,
        spec=spec,
        repl=repl,
        runtime_dir=runtime,
        limits=limits.repl_sandbox,
        seed_home=lambda dirs: programs.seed_home(spec, dirs),
        warmup_timeout_s=settings.repl.warmup_timeout_seconds,
        max_state_bytes=limits.max_file_bytes,
    )
    states = StateStore(metadata, blobs, limits.state) if settings.state.persistence_enabled else None
    return WarmPython(ReplPool(launcher, limits.pool), states, settings.state.capture_on_error)

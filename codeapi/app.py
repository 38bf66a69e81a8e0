"""create_app(settings): builds every component and the lifespan. The only wiring in codeapi."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from codeapi import __version__
from codeapi.auth.gate import AuthGate
from codeapi.auth.keys import KeyChecker
from codeapi.auth.managed import environment_records, refuse_short_keys
from codeapi.auth.ratelimit import RATE_LIMIT_HEADERS, RateLimiter
from codeapi.auth.tokens import build_token_verifier
from codeapi.config import Settings
from codeapi.egress.gateway import EgressGateway, EgressPolicy, network_env
from codeapi.egress.skilldeps import SkillDeps
from codeapi.errors import SandboxFailure
from codeapi.execution.accounting import Accounting
from codeapi.execution.pipeline import ExecLimits, Pipeline
from codeapi.execution.program import ProgramRunner
from codeapi.execution.service import ExecutionService
from codeapi.execution.warm import WarmPython
from codeapi.http import errors
from codeapi.http.deps import Components, require_api_key
from codeapi.http.descriptors import raise_descriptor_limit
from codeapi.http.middleware import RequestLoggingMiddleware
from codeapi.http.profiles import ExecutionProfileMiddleware
from codeapi.http.routes import admin as admin_routes
from codeapi.http.routes import dashboard as dashboard_routes
from codeapi.http.routes import exec as exec_routes
from codeapi.http.routes import files as file_routes
from codeapi.http.routes import health as health_routes
from codeapi.http.routes import programmatic as programmatic_routes
from codeapi.http.routes import skill_deps as skill_deps_routes
from codeapi.languages import get_language
from codeapi.observability.debug import redacted_config, warn_debug_mode
from codeapi.observability.loops import Loops
from codeapi.observability.metrics import KEPT_SANDBOXES, WARM_SANDBOXES
from codeapi.observability.usage import UsageLedger
from codeapi.programmatic.continuations import ContinuationStore
from codeapi.programmatic.service import ProgrammaticLimits, ProgrammaticService
from codeapi.programmatic.variables import SessionVariables
from codeapi.repl.pool import PoolPolicy, ReplPool
from codeapi.repl.sandbox import ReplLauncher
from codeapi.repl.zygote_process import ZygoteProcess
from codeapi.sandbox.cgroups import Cgroups
from codeapi.sandbox.host import prepare_host, resolve_nsjail, unreachable_base_dir
from codeapi.sandbox.policy import (
    BASE_ENV,
    SECCOMP_POLICY,
    Isolation,
    SandboxLimits,
    host_view_binds,
    masked_paths,
    system_binds,
)
from codeapi.sandbox.runner import NsjailRunner
from codeapi.sandbox.workspace import Workspaces
from codeapi.sessions.service import SessionService
from codeapi.sessions.sweeper import sweep_once
from codeapi.state.archiver import archive_once
from codeapi.state.store import StatePolicy, StateStore
from codeapi.storage import open_stores
from codeapi.storage.blobs.base import BlobStore
from codeapi.storage.metadata.base import MetadataStore

logger = structlog.get_logger(__name__)

MB = 1024 * 1024
SHUTDOWN_STEP_S = 15
UID_POOL_SIZE = 64
# Kept REPL sandboxes hold a uid each; half the pool stays for one-shot runs and warm-ups.
MAX_KEPT_SANDBOXES = UID_POOL_SIZE // 2
# A REPL sandbox is not handed out once this old; nsjail's own time limit lies beyond it.
REPL_MAX_AGE_S = 3600.0
ZYGOTE_START_TIMEOUT_S = 120.0


def sandbox_limits(settings: Settings) -> SandboxLimits:
    return SandboxLimits(
        time_s=settings.limits.execution_time,
        memory_mb=settings.limits.memory_mb,
        processes=settings.limits.processes,
        file_size_mb=settings.limits.file_size_mb,
        output_bytes=settings.limits.output_kb * 1024,
        tmpfs_mb=settings.sandbox.tmpfs_size_mb,
    )


def exec_limits(settings: Settings) -> ExecLimits:
    return ExecLimits(
        max_time_s=settings.limits.execution_time,
        memory_mb=settings.limits.memory_mb,
        output_kb=settings.limits.output_kb,
        max_output_files=settings.limits.output_files,
        max_file_bytes=settings.limits.file_size_mb * MB,
        max_filename_length=settings.limits.filename_length,
    )


def build_egress(settings: Settings) -> EgressGateway | None:
    """ENABLE_SANDBOX_NETWORK: sandboxes reach the package registries through the egress proxy."""
    egress = settings.egress
    if not egress.enable_sandbox_network:
        return None
    policy = EgressPolicy(
        port=egress.port,
        allowlist=tuple(egress.allowlist),
        max_connections=egress.max_connections,
        max_bytes=egress.max_mb * MB,
        hosts=egress.hosts,
    )
    return EgressGateway(policy, SkillDeps(egress.skill_deps_path, settings.sandbox.workdir_size_mb * MB))


def build_runner(
    settings: Settings, workspaces: Workspaces, hierarchy: Cgroups | None, egress: EgressGateway | None = None
) -> NsjailRunner:
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


def warn_disabled_isolation(settings: Settings, cgroups_available: bool) -> None:
    """Every isolation the operator switched off, loudly, once per start."""
    security = settings.security
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


def pool_policy(settings: Settings) -> PoolPolicy:
    pool = settings.pool
    return PoolPolicy(
        warm_target=pool.py if pool.enabled else 0,
        warmup_on_startup=pool.warmup_on_startup,
        parallel_batch=pool.parallel_batch,
        replenish_interval_s=pool.replenish_interval,
        exhaustion_trigger=pool.exhaustion_trigger,
        idle_ttl_s=settings.sandbox.ttl_minutes * 60,
        sweep_interval_s=settings.sandbox.cleanup_interval_minutes * 60,
        max_hot=MAX_KEPT_SANDBOXES,
        max_age_s=REPL_MAX_AGE_S,
        zygote_timeout_s=max(ZYGOTE_START_TIMEOUT_S, settings.repl.warmup_timeout_seconds),
    )


def build_state_store(settings: Settings, metadata: MetadataStore, blobs: BlobStore) -> StateStore:
    state = settings.state
    policy = StatePolicy(
        ttl=timedelta(seconds=state.ttl_seconds),
        max_inline_raw_bytes=state.max_redis_size_mb * MB,
        archive_after=timedelta(seconds=state.archive_after_seconds),
        archive_ttl=timedelta(days=state.archive_ttl_days),
        archive_enabled=state.archive_enabled,
    )
    return StateStore(metadata, blobs, policy)


async def refuse_without_sandbox(executions: ExecutionService, base_dir: Path) -> None:
    """A host where no sandbox starts would answer every run with a 500: stop at start-up instead,
    saying what to fix when the cause is known."""
    try:
        await executions.check_sandbox()
    except SandboxFailure as error:
        cause = unreachable_base_dir(base_dir) or error.message
        raise SandboxFailure(f"refusing to start: a test program could not run in a sandbox: {cause}") from error


def start_loops(loops: Loops, settings: Settings, sessions: SessionService, warm: WarmPython | None) -> None:
    """Every background loop, under the one rule of codeapi.observability.loops."""
    interval_s = settings.session.cleanup_interval_minutes * 60
    reap_orphans = settings.session.enable_orphan_s3_cleanup
    loops.every("session sweeper", interval_s, lambda: sweep_once(sessions, reap_orphans, lock_s=interval_s))
    if warm is None:
        return
    pool = warm.pool
    WARM_SANDBOXES.set_function(lambda: len(pool.warm))  # read at scrape time, never stale
    KEPT_SANDBOXES.set_function(lambda: len(pool.hot))
    loops.start("pool refill", pool.replenish_once, pool.wait_for_refill)
    loops.every("pool sweep", pool.policy.sweep_interval_s, pool.sweep_once)
    if warm.states is not None:
        states = warm.states
        archive_interval_s = settings.state.archive_check_interval_seconds
        loops.every("state archiver", archive_interval_s, lambda: archive_once(states, sessions.metadata))


def build_warm_python(
    settings: Settings,
    runner: NsjailRunner,
    workspaces: Workspaces,
    programs: ProgramRunner,
    metadata: MetadataStore,
    blobs: BlobStore,
) -> WarmPython | None:
    """The Python fast path (issue 4): warm REPL sandboxes forked from a zygote, state across calls."""
    if not settings.repl.enabled:
        return None
    spec, runtime = get_language("py"), settings.sandbox.runtime_dir
    memory_mb = settings.limits.memory_mb
    zygote = ZygoteProcess(
        runtime / "python" / "bin" / "python3",
        {**BASE_ENV, **spec.render_env(memory_mb), **network_env(runner.egress)},
        runtime / "mplcache",
        workspaces.system_dir / "zygote",
    )
    launcher = ReplLauncher(
        runner=runner,
        workspaces=workspaces,
        zygote=zygote,
        spec=spec,
        runtime_dir=runtime,
        limits=replace(sandbox_limits(settings), time_s=REPL_MAX_AGE_S + settings.limits.execution_time + 60),
        seed_home=lambda dirs: programs.seed_home(spec, dirs),
        warmup_timeout_s=settings.repl.warmup_timeout_seconds,
        max_state_bytes=settings.limits.file_size_mb * MB,
    )
    states = build_state_store(settings, metadata, blobs) if settings.state.persistence_enabled else None
    return WarmPython(ReplPool(launcher, pool_policy(settings)), states, settings.state.capture_on_error)


async def settle(what: str, *tasks: asyncio.Future[Any]) -> None:
    """Wait a bounded time for shutdown work: a stuck step is logged, never allowed to hang the exit.

    asyncio.wait (unlike wait_for) does not cancel or await what is still pending, so nothing
    that swallows a cancellation can hold the shutdown; the processes left are killed below.
    """
    _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_STEP_S)
    if pending:
        logger.error("codeapi.shutdown_step_stuck", step=what, pending=len(pending))


def create_app(settings: Settings) -> FastAPI:
    tokens = build_token_verifier(settings.auth)
    refuse_short_keys(settings.auth, settings.api.debug)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sandbox, security = settings.sandbox, settings.security
        raise_descriptor_limit(UID_POOL_SIZE)
        workspaces = Workspaces(sandbox.base_dir, sandbox.uid, UID_POOL_SIZE, sandbox.workdir_size_mb)
        isolated = security.enable_network_isolation or security.enable_filesystem_isolation
        hierarchy = prepare_host(sandbox, workspaces, require_cgroups=isolated)
        warn_disabled_isolation(settings, hierarchy is not None)
        metadata, blobs = await open_stores(settings.storage, settings.redis, settings.s3)
        sessions = SessionService(
            metadata,
            blobs,
            ttl=timedelta(hours=settings.session.ttl_hours),
            max_file_bytes=settings.limits.file_size_mb * MB,
            max_files_per_session=settings.limits.files_per_session,
        )
        egress = build_egress(settings)
        if egress is not None:
            await egress.start()
        runner = build_runner(settings, workspaces, hierarchy, egress)
        programs = ProgramRunner(runner, settings.sandbox.runtime_dir, sandbox_limits(settings))
        spool_dir = settings.sandbox.base_dir / ".uploads"
        spool_dir.mkdir(exist_ok=True)
        warm = build_warm_python(settings, runner, workspaces, programs, metadata, blobs)
        usage = UsageLedger(metadata)
        accounting = Accounting(usage)
        pipeline = Pipeline(sessions, exec_limits(settings), egress.skill_deps if egress else None)
        executions = ExecutionService(pipeline, accounting, workspaces, programs, warm)
        limiter = RateLimiter.for_backend(settings.redis)
        loops = Loops()
        pause_s = settings.limits.ptc_pause_seconds
        app.state.programmatic = programmatic = ProgrammaticService(
            pipeline,
            accounting,
            programs,
            workspaces,
            ContinuationStore(metadata, ttl_s=pause_s),
            ProgrammaticLimits(pause_s=pause_s),
            SessionVariables(warm, settings.limits.file_size_mb * MB),
        )
        app.state.components = Components(
            executions=executions,
            sessions=sessions,
            gate=AuthGate(
                settings.auth.auth_enabled,
                KeyChecker(settings.auth.valid_keys),
                metadata,
                tokens,
                limiter,
                KeyChecker((settings.auth.master_api_key,)) if settings.auth.master_api_key else None,
            ),
            usage=usage,
            environment_keys=environment_records(settings.auth, datetime.now(UTC)),
            max_filename_length=settings.limits.filename_length,
            max_files_per_session=settings.limits.files_per_session,
            max_file_bytes=settings.limits.file_size_mb * MB,
            spool_dir=spool_dir,
            backends={"metadata": metadata.name, "files": blobs.name},
            check_sandbox=executions.check_sandbox,
            loops=loops,
            egress=egress,
        )
        try:
            await refuse_without_sandbox(executions, sandbox.base_dir)
            start_loops(loops, settings, sessions, warm)
            logger.info("codeapi.started", version=__version__, metadata=metadata.name, files=blobs.name)
            if settings.api.debug:
                warn_debug_mode()
            yield
        finally:
            await settle("background loops", asyncio.ensure_future(loops.stop()))
            await settle("programmatic runs", asyncio.ensure_future(programmatic.close()))
            if warm is not None:
                await settle("warm pool", asyncio.ensure_future(warm.pool.stop()))
            # Runs still in flight die with the API: uvicorn re-raises SIGTERM right after this.
            runner.close()
            if egress is not None:
                await egress.stop()
            workspaces.close()
            await settle("usage counts", asyncio.ensure_future(usage.flush()))
            await limiter.close()
            await metadata.close()
            await blobs.close()
            logger.info("codeapi.stopped")

    docs = settings.dev.enable_docs
    app = FastAPI(
        title="codeapi",
        version=__version__,
        description="Self-hosted, LibreChat-compatible Code Interpreter API",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    errors.install(app)
    app.state.debug = settings.api.debug
    app.include_router(admin_routes.router)
    app.include_router(skill_deps_routes.router)
    if settings.auth.master_api_key:
        app.include_router(dashboard_routes.router)
    if settings.api.debug:
        app.include_router(admin_routes.debug_router(redacted_config(settings)))
    protected = APIRouter(dependencies=[Depends(require_api_key)])
    protected.include_router(exec_routes.router)
    protected.include_router(file_routes.router)
    protected.include_router(programmatic_routes.router)
    for prefix in ("", "/v1"):
        app.include_router(protected, prefix=prefix, include_in_schema=prefix == "")
        app.include_router(health_routes.router, prefix=prefix, include_in_schema=prefix == "")
    if settings.dev.enable_cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.dev.cors_origins or ["*"],
            allow_methods=["*"],
            allow_headers=["*"],
            # A browser client reads these: a download's file name, the request id, its remaining quota.
            expose_headers=["Content-Disposition", "X-Request-ID", "Retry-After", *RATE_LIMIT_HEADERS],
        )
    app.add_middleware(ExecutionProfileMiddleware, served=settings.api.execution_profiles)
    app.add_middleware(RequestLoggingMiddleware)
    return app

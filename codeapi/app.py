"""create_app(settings): the composition root. Settings -> one ``Limits`` -> the components, which the
lifespan starts in order on one exit stack: each registers its stop as it starts, so they stop in reverse.

The builders this shares with maintenance.py and the bench live in codeapi/wiring/.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog
from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from codeapi import __version__
from codeapi.auth.gate import AuthGate
from codeapi.auth.keys import KeyChecker
from codeapi.auth.managed import environment_records, refuse_short_keys
from codeapi.auth.ratelimit import RATE_LIMIT_HEADERS, RateLimiter
from codeapi.auth.tokens import TokenVerifier, build_token_verifier
from codeapi.config import Settings
from codeapi.egress.gateway import EgressGateway
from codeapi.errors import SandboxFailure
from codeapi.execution.accounting import Accounting
from codeapi.execution.pipeline import Pipeline
from codeapi.execution.program import ProgramRunner
from codeapi.execution.service import ExecutionService
from codeapi.execution.stateful import StatefulRuns
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
from codeapi.http.routes import runtime_sessions as runtime_session_routes
from codeapi.http.routes import skill_deps as skill_deps_routes
from codeapi.observability.debug import redacted_config, warn_debug_mode
from codeapi.observability.loops import Loops
from codeapi.observability.metrics import KEPT_SANDBOXES, WARM_SANDBOXES
from codeapi.observability.usage import UsageLedger
from codeapi.programmatic.continuations import ContinuationStore
from codeapi.programmatic.service import ProgrammaticService
from codeapi.programmatic.variables import SessionVariables
from codeapi.sandbox.host import prepare_host, unreachable_base_dir, warn_disabled_isolation
from codeapi.sandbox.runner import NsjailRunner
from codeapi.sandbox.workspace import Workspaces
from codeapi.sessions.service import SessionService
from codeapi.sessions.sweeper import sweep_once
from codeapi.state.archiver import archive_once
from codeapi.storage import open_stores
from codeapi.storage.blobs.base import BlobStore
from codeapi.storage.metadata.base import MetadataStore
from codeapi.wiring.components import build_egress, build_runner, build_warm_python
from codeapi.wiring.limits import UID_POOL_SIZE, Limits, derive_limits
from codeapi.workspaces.store import RuntimeSessions

logger = structlog.get_logger(__name__)

SHUTDOWN_STEP_S = 15


@dataclass(frozen=True)
class Stores:
    """Started first and stopped last: everything below keeps records in them."""

    metadata: MetadataStore
    blobs: BlobStore
    limiter: RateLimiter
    usage: UsageLedger


@dataclass(frozen=True)
class Sandboxes:
    """The host prepared, the one runner, and the warm Python set on top of it."""

    workspaces: Workspaces
    runner: NsjailRunner
    egress: EgressGateway | None
    programs: ProgramRunner
    warm: WarmPython | None


@dataclass(frozen=True)
class Services:
    """What requests reach: stopped first, so no run starts once the sandboxes go."""

    sessions: SessionService
    executions: ExecutionService
    programmatic: ProgrammaticService
    loops: Loops
    runtimes: RuntimeSessions | None  # None: the stateful profile is not served


async def settle(what: str, stop: Callable[[], Awaitable[object]]) -> None:
    """Wait a bounded time for a shutdown step: a stuck step is logged, never allowed to hang the exit.

    asyncio.wait (unlike wait_for) does not cancel or await what is still pending, so nothing
    that swallows a cancellation can hold the shutdown; the processes left are killed later in the stack.
    """
    _, pending = await asyncio.wait((asyncio.ensure_future(stop()),), timeout=SHUTDOWN_STEP_S)
    if pending:
        logger.error("codeapi.shutdown_step_stuck", step=what)


async def start_stores(settings: Settings, stack: AsyncExitStack) -> Stores:
    metadata, blobs = await open_stores(settings.storage, settings.redis, settings.s3)
    stack.push_async_callback(blobs.close)
    stack.push_async_callback(metadata.close)
    limiter = RateLimiter.for_backend(settings.redis)
    stack.push_async_callback(limiter.close)
    usage = UsageLedger(metadata)
    stack.push_async_callback(settle, "usage counts", usage.flush)
    return Stores(metadata, blobs, limiter, usage)


async def start_sandboxes(settings: Settings, limits: Limits, stores: Stores, stack: AsyncExitStack) -> Sandboxes:
    sandbox, security = settings.sandbox, settings.security
    raise_descriptor_limit(UID_POOL_SIZE)
    workspaces = Workspaces(sandbox.base_dir, sandbox.uid, UID_POOL_SIZE, sandbox.workdir_size_mb)
    stack.callback(workspaces.close)
    isolated = security.enable_network_isolation or security.enable_filesystem_isolation
    hierarchy = prepare_host(sandbox, workspaces, require_cgroups=isolated)
    warn_disabled_isolation(security, hierarchy is not None)
    egress = build_egress(settings, limits.egress)
    if egress is not None:
        await egress.start()
        stack.push_async_callback(egress.stop)
    runner = build_runner(settings, workspaces, hierarchy, egress)
    # Runs still in flight die with the API: uvicorn re-raises SIGTERM right after the stack unwinds.
    stack.callback(runner.close)
    programs = ProgramRunner(runner, sandbox.runtime_dir, limits.sandbox)
    warm = build_warm_python(settings, limits, runner, workspaces, programs, stores.metadata, stores.blobs)
    if warm is not None:
        stack.push_async_callback(settle, "warm pool", warm.pool.stop)
    return Sandboxes(workspaces, runner, egress, programs, warm)


def build_gate(settings: Settings, stores: Stores, tokens: TokenVerifier | None) -> AuthGate:
    auth = settings.auth
    return AuthGate(
        auth.auth_enabled,
        KeyChecker(auth.valid_keys),
        stores.metadata,
        tokens,
        stores.limiter,
        KeyChecker((auth.master_api_key,)) if auth.master_api_key else None,
    )


def start_services(
    settings: Settings, limits: Limits, stores: Stores, sandboxes: Sandboxes, stack: AsyncExitStack
) -> Services:
    sessions = SessionService(
        stores.metadata,
        stores.blobs,
        ttl=limits.session_ttl,
        max_file_bytes=limits.max_file_bytes,
        max_files_per_session=limits.max_files_per_session,
    )
    skill_deps = sandboxes.egress.skill_deps if sandboxes.egress else None
    pipeline, accounting = Pipeline(sessions, limits.exec, skill_deps), Accounting(stores.usage)
    runtimes, stateful = None, None
    if "stateful" in settings.api.execution_profiles:
        runtimes = RuntimeSessions(stores.metadata, stores.blobs, limits.runtime)
        stateful = StatefulRuns(pipeline, runtimes, sandboxes.workspaces, sandboxes.programs, sandboxes.warm)
    executions = ExecutionService(
        pipeline, accounting, sandboxes.workspaces, sandboxes.programs, sandboxes.warm, stateful
    )
    programmatic = ProgrammaticService(
        pipeline,
        accounting,
        sandboxes.programs,
        sandboxes.workspaces,
        ContinuationStore(stores.metadata, ttl_s=limits.programmatic.pause_s),
        limits.programmatic,
        SessionVariables(sandboxes.warm, limits.max_file_bytes),
    )
    stack.push_async_callback(settle, "programmatic runs", programmatic.close)
    loops = Loops()
    stack.push_async_callback(settle, "background loops", loops.stop)
    return Services(sessions, executions, programmatic, loops, runtimes)


def http_components(
    settings: Settings, limits: Limits, stores: Stores, sandboxes: Sandboxes, services: Services, gate: AuthGate
) -> Components:
    """What the routes reach through ``codeapi.http.deps``."""
    spool_dir = settings.sandbox.base_dir / ".uploads"
    spool_dir.mkdir(exist_ok=True)
    return Components(
        executions=services.executions,
        sessions=services.sessions,
        gate=gate,
        usage=stores.usage,
        environment_keys=environment_records(settings.auth, datetime.now(UTC)),
        max_filename_length=limits.max_filename_length,
        max_files_per_session=limits.max_files_per_session,
        max_file_bytes=limits.max_file_bytes,
        spool_dir=spool_dir,
        backends={"metadata": stores.metadata.name, "files": stores.blobs.name},
        check_sandbox=services.executions.check_sandbox,
        loops=services.loops,
        egress=sandboxes.egress,
        runtimes=services.runtimes,
    )


async def start(app: FastAPI, settings: Settings, limits: Limits, tokens: TokenVerifier | None) -> AsyncExitStack:
    """Every component, started in order; the returned stack stops them in reverse. A start that
    fails stops what had started before it, then raises."""
    async with AsyncExitStack() as stack:
        stack.callback(logger.info, "codeapi.stopped")
        stores = await start_stores(settings, stack)
        sandboxes = await start_sandboxes(settings, limits, stores, stack)
        services = start_services(settings, limits, stores, sandboxes, stack)
        gate = build_gate(settings, stores, tokens)
        app.state.programmatic = services.programmatic
        app.state.components = http_components(settings, limits, stores, sandboxes, services, gate)
        await refuse_without_sandbox(services.executions, settings.sandbox.base_dir)
        start_loops(services.loops, settings, services.sessions, sandboxes.warm, services.runtimes)
        logger.info("codeapi.started", version=__version__, metadata=stores.metadata.name, files=stores.blobs.name)
        return stack.pop_all()


async def refuse_without_sandbox(executions: ExecutionService, base_dir: Path) -> None:
    """A host where no sandbox starts would answer every run with a 500: stop at start-up instead,
    saying what to fix when the cause is known."""
    try:
        await executions.check_sandbox()
    except SandboxFailure as error:
        cause = unreachable_base_dir(base_dir) or error.message
        raise SandboxFailure(f"refusing to start: a test program could not run in a sandbox: {cause}") from error


RUNTIME_SWEEP_S = 120


def start_loops(
    loops: Loops,
    settings: Settings,
    sessions: SessionService,
    warm: WarmPython | None,
    runtimes: RuntimeSessions | None,
) -> None:
    """Every background loop, under the one rule of codeapi.observability.loops."""
    interval_s = settings.session.cleanup_interval_minutes * 60
    reap_orphans = settings.session.enable_orphan_s3_cleanup
    loops.every("session sweeper", interval_s, lambda: sweep_once(sessions, reap_orphans, lock_s=interval_s))
    if runtimes is not None:
        # ended workspaces' checkpoints go within a minute or two of their idle time or age
        sweep_s = min(interval_s, RUNTIME_SWEEP_S, runtimes.policy.idle_s)
        loops.every("runtime session sweeper", sweep_s, runtimes.sweep)
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


def create_app(settings: Settings) -> FastAPI:
    limits = derive_limits(settings)
    tokens = build_token_verifier(settings.auth)
    refuse_short_keys(settings.auth, settings.api.debug)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with await start(app, settings, limits, tokens):
            if settings.api.debug:
                warn_debug_mode()
            yield

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
    app.include_router(runtime_session_routes.router)
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

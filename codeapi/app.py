"""create_app(settings): builds every component and the lifespan. The only wiring in codeapi."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from codeapi import __version__
from codeapi.auth.keys import KeyChecker
from codeapi.config import Settings
from codeapi.execution.program import ProgramRunner
from codeapi.execution.service import ExecLimits, ExecutionService
from codeapi.http import errors
from codeapi.http.deps import Components, require_api_key
from codeapi.http.middleware import RequestLoggingMiddleware
from codeapi.http.routes import exec as exec_routes
from codeapi.http.routes import files as file_routes
from codeapi.http.routes import health as health_routes
from codeapi.sandbox.host import prepare_host, resolve_nsjail
from codeapi.sandbox.policy import SandboxLimits, system_binds
from codeapi.sandbox.runner import NsjailRunner
from codeapi.sandbox.workspace import Workspaces
from codeapi.sessions.service import SessionService
from codeapi.sessions.sweeper import run_sweeper
from codeapi.storage import open_stores

logger = structlog.get_logger(__name__)

MB = 1024 * 1024
UID_POOL_SIZE = 64


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


def build_runner(settings: Settings, workspaces: Workspaces) -> NsjailRunner:
    return NsjailRunner(resolve_nsjail(settings.sandbox.nsjail_binary), system_binds(workspaces.system_dir), True)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workspaces = Workspaces(settings.sandbox.base_dir, settings.sandbox.uid, UID_POOL_SIZE)
        prepare_host(settings.sandbox, workspaces)
        metadata, blobs = await open_stores(settings.storage, settings.redis, settings.s3)
        sessions = SessionService(
            metadata,
            blobs,
            ttl=timedelta(hours=settings.session.ttl_hours),
            max_file_bytes=settings.limits.file_size_mb * MB,
            max_files_per_session=settings.limits.files_per_session,
        )
        programs = ProgramRunner(
            build_runner(settings, workspaces), settings.sandbox.runtime_dir, sandbox_limits(settings)
        )
        spool_dir = settings.sandbox.base_dir / ".uploads"
        spool_dir.mkdir(exist_ok=True)
        executions = ExecutionService(sessions, workspaces, programs, exec_limits(settings))
        app.state.components = Components(
            executions=executions,
            sessions=sessions,
            keys=KeyChecker(settings.auth.valid_keys),
            auth_enabled=settings.auth.auth_enabled,
            max_filename_length=settings.limits.filename_length,
            max_files_per_session=settings.limits.files_per_session,
            max_file_bytes=settings.limits.file_size_mb * MB,
            spool_dir=spool_dir,
            backends={"metadata": metadata.name, "files": blobs.name},
            check_sandbox=executions.check_sandbox,
        )
        sweeper = asyncio.create_task(
            run_sweeper(
                sessions,
                interval_s=settings.session.cleanup_interval_minutes * 60,
                reap_orphans=settings.session.enable_orphan_s3_cleanup,
            )
        )
        logger.info("codeapi.started", version=__version__, metadata=metadata.name, files=blobs.name)
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
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
    protected = APIRouter(dependencies=[Depends(require_api_key)])
    protected.include_router(exec_routes.router)
    protected.include_router(file_routes.router)
    for prefix in ("", "/v1"):
        app.include_router(protected, prefix=prefix, include_in_schema=prefix == "")
        app.include_router(health_routes.router, prefix=prefix, include_in_schema=prefix == "")
    if settings.dev.enable_cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.dev.cors_origins or ["*"],
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(RequestLoggingMiddleware)
    return app

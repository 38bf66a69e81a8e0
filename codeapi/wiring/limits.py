"""Settings -> ``Limits``: every limit and policy that a component is given, derived once from the settings.

The policy constants that no setting names live here too, each with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from codeapi.config import Settings
from codeapi.egress.gateway import EgressPolicy
from codeapi.execution.pipeline import ExecLimits
from codeapi.programmatic.service import ProgrammaticLimits
from codeapi.repl.pool import PoolPolicy
from codeapi.sandbox.policy import SandboxLimits
from codeapi.state.store import StatePolicy
from codeapi.units import KB, MB
from codeapi.workspaces.store import RuntimePolicy

# The uids of one API instance, so the most sandboxes (and their job directories) it holds at once.
UID_POOL_SIZE = 64
# Kept REPL sandboxes hold a uid each; half the pool stays for one-shot runs and warm-ups.
MAX_KEPT_SANDBOXES = UID_POOL_SIZE // 2
# A REPL sandbox is not handed out once this old; nsjail's own time limit lies beyond it.
REPL_MAX_AGE_S = 3600.0
# A REPL jail's own time limit is its age limit + one call + this: a call that starts just before the
# sandbox's age limit still ends (or times out) before nsjail's limit kills the jail.
REPL_JAIL_SLACK_S = 60.0
ZYGOTE_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Limits:
    sandbox: SandboxLimits  # one job: MAX_EXECUTION_TIME, MAX_MEMORY_MB, ...
    repl_sandbox: SandboxLimits  # a warm REPL jail: time_s is the jail's whole lifetime
    exec: ExecLimits
    pool: PoolPolicy
    state: StatePolicy
    runtime: RuntimePolicy
    egress: EgressPolicy | None  # None: ENABLE_SANDBOX_NETWORK is off
    programmatic: ProgrammaticLimits
    session_ttl: timedelta  # SESSION_TTL_HOURS
    max_file_bytes: int  # MAX_FILE_SIZE_MB: an upload, an output file, a saved state
    max_files_per_session: int
    max_filename_length: int


def derive_limits(settings: Settings) -> Limits:
    limits = settings.limits
    sandbox = SandboxLimits(
        time_s=limits.execution_time,
        memory_mb=limits.memory_mb,
        processes=limits.processes,
        file_size_mb=limits.file_size_mb,
        output_bytes=limits.output_kb * KB,
        tmpfs_mb=settings.sandbox.tmpfs_size_mb,
    )
    max_file_bytes = limits.file_size_mb * MB
    return Limits(
        sandbox=sandbox,
        repl_sandbox=replace(sandbox, time_s=REPL_MAX_AGE_S + limits.execution_time + REPL_JAIL_SLACK_S),
        exec=ExecLimits(
            max_time_s=limits.execution_time,
            memory_mb=limits.memory_mb,
            output_kb=limits.output_kb,
            max_output_files=limits.output_files,
            max_file_bytes=max_file_bytes,
            max_filename_length=limits.filename_length,
        ),
        pool=pool_policy(settings),
        state=state_policy(settings),
        runtime=runtime_policy(settings),
        egress=egress_policy(settings),
        programmatic=ProgrammaticLimits(pause_s=limits.ptc_pause_seconds),
        session_ttl=timedelta(hours=settings.session.ttl_hours),
        max_file_bytes=max_file_bytes,
        max_files_per_session=limits.files_per_session,
        max_filename_length=limits.filename_length,
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


def state_policy(settings: Settings) -> StatePolicy:
    state = settings.state
    return StatePolicy(
        ttl=timedelta(seconds=state.ttl_seconds),
        max_inline_raw_bytes=state.max_redis_size_mb * MB,
        archive_after=timedelta(seconds=state.archive_after_seconds),
        archive_ttl=timedelta(days=state.archive_ttl_days),
        archive_enabled=state.archive_enabled,
    )


def runtime_policy(settings: Settings) -> RuntimePolicy:
    runtime_session = settings.runtime_session
    return RuntimePolicy(
        idle_s=runtime_session.idle_seconds,
        max_age_s=runtime_session.max_age_seconds,
        max_per_owner=runtime_session.max_per_user,
        max_bytes=runtime_session.checkpoint_max_mb * MB,
    )


def egress_policy(settings: Settings) -> EgressPolicy | None:
    egress = settings.egress
    if not egress.enable_sandbox_network:
        return None
    return EgressPolicy(
        port=egress.port,
        allowlist=tuple(egress.allowlist),
        max_connections=egress.max_connections,
        max_bytes=egress.max_mb * MB,
        hosts=egress.hosts,
    )

"""The process's open-file limit (RLIMIT_NOFILE): raised to the hard limit at start-up and checked
against what the service may hold open at once.

Every running job holds descriptors in this process (nsjail's pipes, its pidfd, cgroup files, and
up to one per directory level while its outputs are walked); uploads hold one spool file each, and
connections to clients, Redis and S3 one each. A default soft limit of 1024 is reached long before
the uid pool is.
"""

from __future__ import annotations

import resource

import structlog

from codeapi.execution.files import MAX_DEPTH

logger = structlog.get_logger(__name__)

DESCRIPTORS_PER_JOB = 16 + MAX_DEPTH
DESCRIPTORS_BESIDES_JOBS = 2048  # connections, uploads, stores, logs, the interpreter's own
UNLIMITED_FALLBACK = 1 << 20  # the kernel's default fs.nr_open, the most a soft limit may be


def descriptor_budget(concurrent_jobs: int) -> int:
    return DESCRIPTORS_BESIDES_JOBS + concurrent_jobs * DESCRIPTORS_PER_JOB


def raise_descriptor_limit(concurrent_jobs: int) -> int:
    """Set the soft limit to the hard one; warns when even that is below the budget. Returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_FALLBACK if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            logger.warning("codeapi.descriptor_limit_not_raised", soft=soft, hard=hard, error=str(error))
    budget = descriptor_budget(concurrent_jobs)
    if soft < budget:
        logger.warning(
            "codeapi.descriptor_limit_low",
            limit=soft,
            budget=budget,
            fix="raise the hard open-file limit (ulimit -Hn, systemd LimitNOFILE, docker --ulimit nofile)",
        )
    return soft

"""``python -m bench.auth_check [--redis-port N]``: what rate limits, auth and usage counting cost per request.

Times, against the embedded stores (SQLite, in-memory limits) and, when a Redis answers on the port,
the shared ones: the rate-limit check alone (two windows counted, the tightest one's reset read);
AuthGate.admit for a managed key with those limits (key lookup, lockout check, limits, use counter);
and the usage sample an execution adds. The 1 ms target is the rate-limit check's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from codeapi.auth.gate import AuthGate
from codeapi.auth.keys import KeyChecker
from codeapi.auth.managed import new_key, new_record
from codeapi.auth.ratelimit import RateLimiter
from codeapi.config.groups import RedisSettings
from codeapi.storage.metadata.base import MetadataStore, RateLimits, UsageSample
from codeapi.storage.metadata.redis import RedisMetadata
from codeapi.storage.metadata.sqlite import SqliteMetadata

ROUNDS = 2000
TARGET_MS = 1.0
LIMITS = RateLimits(per_minute=10**6, daily=10**7)


async def measure(store: MetadataStore, limiter: RateLimiter) -> list[float]:
    key = new_key()
    await store.put_key(new_record(key, "bench", LIMITS, {}))
    gate = AuthGate(True, KeyChecker(("environment-key-0000",)), store, None, limiter, None)
    headers = {"x-api-key": key}
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await gate.admit(headers, "127.0.0.1")
        timings.append((time.perf_counter() - started) * 1000)
    await store.delete_key(new_record(key, "bench", LIMITS, {}).key_hash)
    return timings


async def measure_limit(limiter: RateLimiter) -> list[float]:
    """The rate-limit check alone: both windows counted, the tightest one's reset read."""
    identity = new_key()
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await limiter.hit(identity, LIMITS)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def measure_usage(store: MetadataStore) -> list[float]:
    timings = []
    for _ in range(ROUNDS):
        sample = UsageSample("bench", "py", datetime.now(UTC), wall_s=0.01, bytes_in=20, bytes_out=10)
        started = time.perf_counter()
        await store.add_usage(sample)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def report(name: str, timings: list[float], judged: bool = False) -> bool:
    """One line per measurement; only the rate-limit check itself is held to the 1 ms target."""
    ordered = sorted(timings)
    p50, p99 = statistics.median(ordered), ordered[int(len(ordered) * 0.99)]
    verdict = ("ok" if p50 <= TARGET_MS else "OVER TARGET") if judged else ""
    print(f"{name:<28} p50 {p50:.3f} ms  p99 {p99:.3f} ms  ({len(timings)} runs)  {verdict}")  # noqa: T201
    return p50 <= TARGET_MS or not judged


async def main(redis_port: int | None) -> int:
    ok = True
    with tempfile.TemporaryDirectory() as directory:
        sqlite = await SqliteMetadata.open(Path(directory) / "bench.db")
        memory = RateLimiter.for_backend(RedisSettings())
        ok &= report("rate limit check (memory)", await measure_limit(memory), judged=True)
        ok &= report("auth path (sqlite, memory)", await measure(sqlite, memory))
        ok &= report("usage sample (sqlite)", await measure_usage(sqlite))
        await sqlite.close()
    if redis_port is not None:
        settings = RedisSettings(_env_file=None, host="127.0.0.1", port=redis_port, db=15)
        redis, limiter = RedisMetadata(settings, prefix="codeapi-bench"), RateLimiter.for_backend(settings)
        ok &= report("rate limit check (redis)", await measure_limit(limiter), judged=True)
        ok &= report("auth path (redis, redis)", await measure(redis, limiter))
        ok &= report("usage sample (redis)", await measure_usage(redis))
        await limiter.close()
        await redis.close()
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-port", type=int, help="also measure against the Redis on 127.0.0.1:PORT")
    sys.exit(asyncio.run(main(parser.parse_args().redis_port)))

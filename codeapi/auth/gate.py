"""The auth path: who is calling, and may they, now?

User routes: API keys from the environment, managed keys from the metadata store (read on every
request, so a revoked or disabled key is refused on every replica at once), Bearer JWTs from
LibreChat (CODEAPI_AUTH_PROVIDER=librechat-jwt: only those); then the caller's rate limit. Bad credentials count against the client's IP, which is
locked out for a while after too many. With AUTH_ENABLED=false all of it is skipped, as the guide
says. Admin routes: the master key, behind the same lockout, whatever AUTH_ENABLED says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from codeapi.auth.keys import KeyChecker, extract_key, fingerprint
from codeapi.auth.managed import hash_key
from codeapi.auth.ratelimit import JWT_USER_LIMITS, RateLimiter, RateState
from codeapi.auth.tokens import TokenVerifier, extract_bearer
from codeapi.errors import AuthError, NotFound, RateLimited
from codeapi.observability.security import security_event
from codeapi.storage.metadata.base import KeyRecords, RateLimits


@dataclass(frozen=True)
class Caller:
    """Whom usage is counted for: a managed key's hash, ``env:<fingerprint>``, ``user:<owner id>`` of a
    token's (tenant, user), or ``anonymous``."""

    usage_id: str
    key_prefix: str | None = None
    user_id: str | None = None  # a verified Bearer token's owner id: its tenant and sub (sessions.owners)
    tenant_id: str | None = None  # a verified Bearer token's tenant
    limits: RateLimits | None = None
    managed: bool = False  # a key from the metadata store (its use is counted on its record)
    rate: RateState | None = None  # the caller's tightest limit after this request, for the response headers

    @property
    def label(self) -> str:
        """How logs name the caller: a key's prefix or a user id, never a secret."""
        return self.key_prefix or self.user_id or self.usage_id

    @property
    def metric_label(self) -> str:
        """A bounded Prometheus label: a key's prefix, else "jwt" or "anonymous" (one series per user would not be)."""
        return self.key_prefix or ("jwt" if self.user_id is not None else self.usage_id)


ANONYMOUS = Caller("anonymous")


class AuthGate:
    def __init__(
        self,
        enabled: bool,
        environment: KeyChecker,
        managed: KeyRecords,
        tokens: TokenVerifier | None,
        limiter: RateLimiter,
        master: KeyChecker | None,
    ) -> None:
        self.enabled = enabled
        self.environment = environment
        self.managed = managed
        self.tokens = tokens
        self.limiter = limiter
        self.master = master  # None: no MASTER_API_KEY, the admin API does not exist

    async def admit(self, headers: Mapping[str, str], client_ip: str) -> Caller:
        if not self.enabled:
            return ANONYMOUS
        # The lockout and the key lookup are independent round trips: run them together.
        lockout, identified = await asyncio.gather(self.limiter.lockout(client_ip), self.identify(headers))
        if lockout is not None:
            raise lockout
        if isinstance(identified, AuthError):
            await self.limiter.count_failure(client_ip)
            security_event("security.auth_failed", client_ip=client_ip, reason=identified.message, **presented(headers))
            raise identified
        caller = identified
        used_at = datetime.now(UTC)
        try:
            rate, _ = await asyncio.gather(
                self.limiter.hit(caller.usage_id, caller.limits) if caller.limits else nothing(),
                self.managed.touch_key(caller.usage_id, used_at) if caller.managed else nothing(),
            )
        except RateLimited:
            security_event("security.rate_limited", client_ip=client_ip, caller=caller.label)
            raise
        return replace(caller, rate=rate)

    async def admit_admin(self, headers: Mapping[str, str], client_ip: str) -> None:
        if self.master is None:
            raise NotFound("Not Found")
        # The lockout guards the master key even with AUTH_ENABLED=false: that switch opens the user
        # endpoints (the guide's bypass is of their auth path), never the admin API.
        if (lockout := await self.limiter.lockout(client_ip)) is not None:
            raise lockout
        key = extract_key(headers)
        if key is not None and self.master.matches(key):
            return
        await self.limiter.count_failure(client_ip)
        security_event("security.admin_auth_failed", client_ip=client_ip, **presented(headers))
        raise AuthError("Master API key is required" if key is None else "Invalid master API key")

    async def identify(self, headers: Mapping[str, str]) -> Caller | AuthError:
        """The caller the credentials name, or why they name none (a failure to count, not yet raised)."""
        token, tokens = extract_bearer(headers), self.tokens
        if tokens is not None:
            # Where keys are credentials too, x-api-key wins over a token (as in the reference), so a
            # wrong key is refused even beside a good token.
            key_wins = not tokens.only_credential and bool(headers.get("x-api-key", "").strip())
            if token is not None and not key_wins:
                try:
                    principal = tokens.verify(token)
                except AuthError as error:
                    return error
                owner_id = principal.owner_id
                return Caller(
                    f"user:{owner_id}", user_id=owner_id, tenant_id=principal.tenant_id, limits=JWT_USER_LIMITS
                )
            if tokens.only_credential:
                return AuthError("Bearer token is required")
        key = extract_key(headers)
        if key is None:
            return AuthError("API key is required")
        if self.environment.matches(key):
            return Caller(f"env:{fingerprint(key)}", key_prefix=fingerprint(key))
        record = await self.managed.get_key(hash_key(key))
        if record is None:
            return AuthError("Invalid API key")
        if not record.enabled:
            return AuthError("API key is disabled")
        return Caller(record.key_hash, key_prefix=record.key_prefix, limits=record.rate_limits, managed=True)


def presented(headers: Mapping[str, str]) -> dict[str, str]:
    """What a security event may say about the refused credential: a fingerprint, never the secret."""
    key = extract_key(headers)
    if key is not None:
        return {"key_fingerprint": fingerprint(key)}
    return {"credential": "bearer"} if extract_bearer(headers) else {}


async def nothing() -> None:
    return None

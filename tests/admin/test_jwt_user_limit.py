"""LibreChat's per-user tokens: each user has a request limit of their own."""

from __future__ import annotations

import uuid
from pathlib import Path

from codeapi.auth.ratelimit import JWT_USER_LIMITS
from tests.admin.conftest import running_service
from tests.http.test_jwt_auth import ED25519, bearer, public_pem, token

FILES = "/files/" + "A" * 21


async def test_a_jwt_user_over_the_per_user_limit_gets_429_while_another_user_does_not(test_root: Path) -> None:
    assert JWT_USER_LIMITS.per_minute is not None
    overrides = {"CODEAPI_JWT_PUBLIC_KEY": public_pem(ED25519)}
    async with running_service(test_root / f"jwt-{uuid.uuid4().hex[:6]}", **overrides) as service:
        async with service.client() as client:
            busy = bearer(token(sub=f"busy-{uuid.uuid4().hex[:6]}"))
            statuses = [(await client.get(FILES, headers=busy)).status_code for _ in range(JWT_USER_LIMITS.per_minute)]
            assert set(statuses) == {200}
            refused = await client.get(FILES, headers=busy)
            assert refused.status_code == 429
            assert refused.json()["error"] == "rate_limited"
            assert refused.headers["X-RateLimit-Limit"] == str(JWT_USER_LIMITS.per_minute)
            other = await client.get(FILES, headers=bearer(token(sub="someone-else")))
            assert other.status_code == 200
            assert int(other.headers["RateLimit-Remaining"]) == JWT_USER_LIMITS.per_minute - 1

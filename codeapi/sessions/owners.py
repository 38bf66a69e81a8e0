"""Owner ids: who a session (its files, its state), a rate-limit counter and a usage row belong to.

A verified token's user is the pair (tenant, sub) of LibreChat's claims: ``<tenant>/<sub>``, the
tenant percent-encoded so that the first "/" ends it. A user id that an API key's holder claims
(``user_id`` in a body, ``User-Id`` on an upload) has its "%" and "/" percent-encoded: it never
contains "/", so no body can name a token's owner, and two claims stay two owners.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

TENANT_END = "/"


def token_owner(tenant_id: str, user_id: str) -> str:
    return f"{quote(tenant_id, safe='')}{TENANT_END}{user_id}"


def claimed_owner(user_id: str | None) -> str | None:
    if not user_id:
        return None
    return user_id.replace("%", "%25").replace(TENANT_END, "%2F")


def owner_tenant(owner_id: str | None) -> str | None:
    """The tenant of a token's owner id; None for a claimed id or no owner."""
    if owner_id is None or TENANT_END not in owner_id:
        return None
    return unquote(owner_id.partition(TENANT_END)[0])

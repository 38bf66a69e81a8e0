"""Owner ids: a token's (tenant, user) and a key holder's claimed user id never name the same owner."""

from __future__ import annotations

import pytest

from codeapi.sessions.owners import claimed_owner, owner_tenant, token_owner

CLAIMS = ["alice", "legacy/alice", "legacy%2Falice", "legacy%252Falice", "%", "/", "a/b/c", "665f1c2e9b1d8a0012345678"]
TOKENS = [("legacy", "alice"), ("acme", "alice"), ("a/b", "c"), ("a", "b/c"), ("%2F", "x"), ("legacy", "a%2Falice")]


@pytest.mark.parametrize("claim", CLAIMS)
def test_a_claimed_user_id_is_never_a_tokens_owner_id(claim: str) -> None:
    assert claimed_owner(claim) not in {token_owner(tenant, user) for tenant, user in TOKENS}
    assert owner_tenant(claimed_owner(claim)) is None


def test_distinct_claims_stay_distinct_owners() -> None:
    assert len({claimed_owner(claim) for claim in CLAIMS}) == len(CLAIMS)


def test_distinct_tenants_and_users_stay_distinct_owners() -> None:
    assert len({token_owner(tenant, user) for tenant, user in TOKENS}) == len(TOKENS)


@pytest.mark.parametrize(("tenant", "user"), TOKENS)
def test_a_tokens_owner_id_names_its_tenant(tenant: str, user: str) -> None:
    assert owner_tenant(token_owner(tenant, user)) == tenant


def test_librechat_user_ids_are_kept_as_they_are() -> None:
    assert claimed_owner("665f1c2e9b1d8a0012345678") == "665f1c2e9b1d8a0012345678"
    assert token_owner("legacy", "665f1c2e9b1d8a0012345678") == "legacy/665f1c2e9b1d8a0012345678"
    assert claimed_owner("") is None and claimed_owner(None) is None

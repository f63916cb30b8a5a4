"""API keys: only digests are kept; missing, unknown, expired and foreign-tenant keys are
refused with their own codes; keys stored in Redis work on every replica."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streamproc.gateway.auth import (
    ApiKeys,
    AuthError,
    KeyRecord,
    bearer_key,
    generate_key,
    key_digest,
    revoke_key,
    store_key,
)
from streamproc.gateway.redis import GatewayRedis
from streamproc.settings import GatewaySettings


def keys_of(redis: GatewayRedis, *configured: dict[str, object], cache_s: float = 0) -> ApiKeys:
    settings = GatewaySettings(api_keys=list(configured), key_cache_s=cache_s)  # type: ignore[arg-type]
    return ApiKeys(settings, redis, {"acme", "globex"})


def test_keys_are_random_and_only_their_digest_is_shown() -> None:
    one, two = generate_key(), generate_key()
    assert one != two and one.startswith("sp_") and len(one) > 40
    assert len(key_digest(one)) == 64 and one not in key_digest(one)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "token"])
def test_a_missing_bearer_key_is_401_missing(header: str | None) -> None:
    with pytest.raises(AuthError) as refused:
        bearer_key(header)
    assert (refused.value.status, refused.value.code) == (401, "missing_api_key")


async def test_configured_keys_name_their_tenant(gw_redis: GatewayRedis) -> None:
    key = generate_key()
    keys = keys_of(gw_redis, {"tenant": "acme", "sha256": key_digest(key)})
    assert await keys.tenant_of(f"Bearer {key}") == "acme"
    assert await keys.tenant_of(f"bearer  {key} ") == "acme"
    with pytest.raises(AuthError) as unknown:
        await keys.tenant_of(f"Bearer {generate_key()}")
    assert unknown.value.code == "invalid_api_key"


async def test_expired_keys_and_unserved_tenants_are_refused(gw_redis: GatewayRedis) -> None:
    old, stranger = generate_key(), generate_key()
    keys = keys_of(
        gw_redis,
        {
            "tenant": "acme",
            "sha256": key_digest(old),
            "expires_at": datetime.now(UTC) - timedelta(seconds=1),
        },
        {"tenant": "initech", "sha256": key_digest(stranger)},
    )
    with pytest.raises(AuthError) as expired:
        await keys.tenant_of(f"Bearer {old}")
    assert (expired.value.status, expired.value.code) == (401, "expired_api_key")
    with pytest.raises(AuthError) as foreign:
        await keys.tenant_of(f"Bearer {stranger}")
    assert (foreign.value.status, foreign.value.code) == (403, "unknown_tenant")


async def test_keys_stored_in_redis_work_until_revoked(gw_redis: GatewayRedis) -> None:
    key = generate_key()
    digest = await store_key(gw_redis, KeyRecord("globex", None, "ci"), key)
    raw = await gw_redis.client.get(gw_redis.key("apikey", digest))
    assert raw is not None and key.encode() not in raw  # the key itself is never stored
    keys = keys_of(gw_redis)
    assert await keys.tenant_of(f"Bearer {key}") == "globex"
    assert await revoke_key(gw_redis, digest)
    with pytest.raises(AuthError):
        await keys.tenant_of(f"Bearer {key}")


async def test_a_stored_key_with_an_expiry_expires(gw_redis: GatewayRedis) -> None:
    key = generate_key()
    soon = datetime.now(UTC) + timedelta(hours=1)
    await store_key(gw_redis, KeyRecord("acme", soon), key)
    keys = keys_of(gw_redis)
    assert await keys.tenant_of(f"Bearer {key}") == "acme"
    with pytest.raises(AuthError) as later:
        await keys.tenant_of(f"Bearer {key}", now=soon + timedelta(seconds=1))
    assert later.value.code == "expired_api_key"

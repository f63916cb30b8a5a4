"""API keys: ``Authorization: Bearer <key>`` → the tenant the key acts for.

A key is 32 random bytes, written ``sp_<base64url>``; only its SHA-256 is ever stored (in the
configuration, ``gateway.api_keys``, or in Redis under ``{prefix}:apikey:{sha256}``) and only
the digest is compared. A fast hash is right here: the keys carry 256 random bits, so no
dictionary or brute-force attack applies (slow password hashes protect low-entropy secrets).
Keys never appear in logs: the access log names the tenant, never the header.

Refusals, each a :class:`AuthError` with a machine-readable ``code``:

* ``missing_api_key`` (401): no ``Authorization: Bearer`` header;
* ``invalid_api_key`` (401): the key is not known (or malformed);
* ``expired_api_key`` (401): the key's ``expires_at`` has passed;
* ``unknown_tenant`` (403): the key's tenant is not in ``gateway.tenants``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from streamproc.gateway.redis import GatewayRedis
from streamproc.settings import ApiKeySpec, GatewaySettings

KEY_PREFIX = "sp_"
#: Longest header value looked at; real keys are 46 characters.
_MAX_KEY_CHARS = 200


class AuthError(Exception):
    """A request refused by authentication (``status`` 401 or 403)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class KeyRecord:
    """What is stored for one key: its tenant and when it stops working."""

    tenant: str
    expires_at: datetime | None = None
    name: str = ""


def generate_key() -> str:
    """A new random API key (shown once; store :func:`key_digest` of it)."""
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def key_digest(key: str) -> str:
    """Lowercase hex SHA-256 of a key: what configuration and Redis hold."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def bearer_key(header: str | None) -> str:
    """The key in an ``Authorization`` header value, or :class:`AuthError` 401."""
    if header is None or not header.strip():
        raise AuthError(401, "missing_api_key", "send the API key as 'Authorization: Bearer <key>'")
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise AuthError(401, "missing_api_key", "the Authorization header must be 'Bearer <key>'")
    if len(key) > _MAX_KEY_CHARS:
        raise AuthError(401, "invalid_api_key", "the API key is not valid")
    return key


class ApiKeys:
    """Looks keys up: first the configured ones, then Redis (remembered ``key_cache_s``)."""

    def __init__(
        self, settings: GatewaySettings, redis: GatewayRedis, tenants: Collection[str]
    ) -> None:
        self._configured = {spec.sha256: _record(spec) for spec in settings.api_keys}
        self._tenants = frozenset(tenants)
        self._redis = redis
        self._cache_s = settings.key_cache_s
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}

    async def tenant_of(self, header: str | None, *, now: datetime | None = None) -> str:
        """The tenant the request's key acts for, or :class:`AuthError`.

        Raises :class:`~streamproc.errors.TransientError` when the key must be looked up in
        Redis and Redis does not answer (the request is then answered 503, not 401).
        """
        digest = key_digest(bearer_key(header))
        record = await self._lookup(digest)
        if record is None:
            raise AuthError(401, "invalid_api_key", "the API key is not valid")
        if record.expires_at is not None and record.expires_at <= (now or datetime.now(UTC)):
            raise AuthError(401, "expired_api_key", "the API key has expired")
        if record.tenant not in self._tenants:
            raise AuthError(
                403, "unknown_tenant", "the API key's tenant is not served by this gateway"
            )
        return record.tenant

    async def _lookup(self, digest: str) -> KeyRecord | None:
        for known, configured in self._configured.items():
            if hmac.compare_digest(known, digest):
                return configured
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        raw = await self._redis.call(self._redis.client.get(self._redis.key("apikey", digest)))
        record = _parse_stored(raw) if raw is not None else None
        if self._cache_s > 0:
            if len(self._cache) > 10_000:  # a flood of random keys must not grow it for ever
                self._cache.clear()
            self._cache[digest] = (time.monotonic() + self._cache_s, record)
        return record


async def store_key(redis: GatewayRedis, record: KeyRecord, key: str) -> str:
    """Store ``key`` (as its digest) for ``record.tenant`` in Redis; returns the digest."""
    digest = key_digest(key)
    body = json.dumps(
        {
            "tenant": record.tenant,
            "expires_at": record.expires_at.isoformat() if record.expires_at else None,
            "name": record.name,
        }
    )
    name = redis.key("apikey", digest)
    if record.expires_at is not None:
        ttl_ms = max(1, int((record.expires_at - datetime.now(UTC)).total_seconds() * 1000))
        await redis.call(redis.client.set(name, body, px=ttl_ms))
    else:
        await redis.call(redis.client.set(name, body))
    return digest


async def revoke_key(redis: GatewayRedis, digest: str) -> bool:
    """Delete a key stored in Redis; whether there was one."""
    return bool(await redis.call(redis.client.delete(redis.key("apikey", digest))))


def _record(spec: ApiKeySpec) -> KeyRecord:
    return KeyRecord(spec.tenant, spec.expires_at, spec.name)


def _parse_stored(raw: bytes | str) -> KeyRecord | None:
    # A damaged entry refuses the key rather than failing the request.
    try:
        data = json.loads(raw)
        expires = data.get("expires_at")
        expires_at = datetime.fromisoformat(expires) if expires else None
        if expires_at is not None and expires_at.tzinfo is None:
            return None
        return KeyRecord(str(data["tenant"]), expires_at, str(data.get("name", "")))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None

"""The gateway's tenants and limits agree with the workers' fair-tenant settings."""

from __future__ import annotations

import pytest

from streamproc.errors import ConfigError
from streamproc.settings import GatewayRates, load_settings


def test_tenants_named_for_the_workers_are_served_with_the_workers_quota() -> None:
    settings = load_settings(
        tenants={
            "weights": {"globex": 2.0},
            "quotas": {"acme": {"events_per_minute": 30}},
            "events_per_minute": 120,
        },
        gateway={"tenants": {"initech": {"requests_per_s": 5, "videos_per_min": 10}}},
    )
    rates = settings.gateway_tenants()
    assert set(rates) == {"acme", "globex", "initech"}
    assert rates["acme"] == GatewayRates(50.0, 100, 30.0, 30)  # the workers' named quota
    assert rates["globex"].videos_per_min == 120.0  # the workers' default quota
    assert rates["initech"] == GatewayRates(5.0, 100, 10.0, 10)  # the gateway's own


def test_without_a_worker_quota_the_gateway_default_applies() -> None:
    settings = load_settings(gateway={"tenants": {"acme": {"burst_requests": 7}}})
    assert settings.gateway_tenants() == {"acme": GatewayRates(50.0, 7, 600.0, 600)}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"gateway": {"idempotency_ttl_s": 10.0}, "ledger": {"ttl_s": 5.0}}, "idempotency_ttl_s"),
        ({"gateway": {"tenants": {"bad name": {"requests_per_s": 1}}}}, "tenant name"),
        ({"gateway": {"api_keys": [{"tenant": "acme", "sha256": "abc"}]}}, "sha256"),
        ({"gateway": {"public_url": "ftp://x"}}, "public_url"),
    ],
)
def test_settings_that_cannot_work_are_refused(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**section)

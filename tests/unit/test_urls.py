"""How URL-like settings are named in errors and logs, and shown by `config show`."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.urls import mask_password, redis_address

passwords = st.text(min_size=1, max_size=40)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://cache", "redis://cache:6379/0"),
        ("redis://:hunter2@cache:6380/3", "redis://cache:6380/3"),
        ("rediss://user:hunter2@cache.internal:6379?db=5", "rediss://cache.internal:6379/5"),
        ("redis://[::1]:6379/1", "redis://[::1]:6379/1"),
        ("unix://:hunter2@/run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
    ],
)
def test_a_redis_is_named_by_host_port_and_db_never_by_its_credentials(
    url: str, address: str
) -> None:
    assert redis_address(url) == address


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://user:hunter2@cache:6379/0", "redis://user:***@cache:6379/0"),
        ("redis://:hun@ter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache:6379/0?password=hunter2&db=1", "redis://cache:6379/0?password=***&db=1"),
        ("redis://user@cache:6379/0", "redis://user@cache:6379/0"),
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
    ],
)
def test_only_the_password_of_a_url_is_masked(url: str, shown: str) -> None:
    assert mask_password(url) == shown


@given(password=passwords, user=st.sampled_from(["", "streamproc"]))
def test_no_password_survives_masking(password: str, user: str) -> None:
    url = f"redis://{user}:{quote(password, safe='')}@cache.internal:6380/4"
    shown = mask_password(url)
    assert shown == f"redis://{user}:***@cache.internal:6380/4"
    assert redis_address(url) == "redis://cache.internal:6380/4"

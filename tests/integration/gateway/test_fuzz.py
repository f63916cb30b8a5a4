"""The API fuzzed from its own OpenAPI document (schemathesis): valid and invalid requests
against a real `streamproc gateway` process, the real broker and Redis. No answer is a 5xx,
every answer conforms to the document, and exactly the accepted submissions are in the topic.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from streamproc.gateway.auth import generate_key, key_digest
from tests.helpers import free_port
from tests.integration.gateway.conftest import gateway_process, tracked
from tests.kafka_broker import Topics, create_topics, read_all

pytestmark = pytest.mark.kafka

#: Bounded so the test stays well under a minute on two shared cores.
EXAMPLES = 300


class FuzzedGateway:
    def __init__(self, url: str, key: str, topics: Topics) -> None:
        self.url = url
        self.key = key
        self.topics = topics


@pytest.fixture
def fuzzed_gateway(kafka_bootstrap: str, tmp_path: Path) -> Iterator[FuzzedGateway]:
    topics = Topics.random()
    asyncio.run(create_topics(kafka_bootstrap, {topics.prompts: 2, f"{topics.prompts}-s": 1}))
    key = generate_key()
    port = free_port()
    env = {
        "STREAMPROC_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAMPROC_KAFKA__PROMPTS_TOPIC": topics.prompts,
        "STREAMPROC_KAFKA__STATUS_TOPIC": f"{topics.prompts}-s",
        "STREAMPROC_KAFKA__ENABLE_IDEMPOTENCE": "false",
        "STREAMPROC_LEDGER__BACKEND": "redis",
        "STREAMPROC_GATEWAY__KEY_PREFIX": tracked(f"gw-fuzz-{topics.prompts}"),
        "STREAMPROC_GATEWAY__HOST": "127.0.0.1",
        "STREAMPROC_GATEWAY__PORT": str(port),
        "STREAMPROC_GATEWAY__TENANTS": json.dumps(
            {
                "acme": {
                    "requests_per_s": 10_000,
                    "burst_requests": 10_000,
                    "videos_per_min": 100_000,
                }
            }
        ),
        "STREAMPROC_GATEWAY__API_KEYS": json.dumps([{"tenant": "acme", "sha256": key_digest(key)}]),
        "STREAMPROC_LOG__LEVEL": "warning",
    }
    log_path = tmp_path / "gateway.log"
    proc = gateway_process(env, log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "gateway never ready"
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield FuzzedGateway(url, key, topics)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


def test_fuzzed_requests_never_fail_the_server_and_only_accepted_ones_are_produced(
    fuzzed_gateway: FuzzedGateway, kafka_bootstrap: str
) -> None:
    gw = fuzzed_gateway
    schema = schemathesis.openapi.from_url(f"{gw.url}/openapi.json")
    submit = schema["/v1/videos"]["POST"]
    cases = st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE),
        schema.as_strategy(GenerationMode.NEGATIVE),
        submit.as_strategy(GenerationMode.POSITIVE),
        submit.as_strategy(GenerationMode.NEGATIVE),
    )
    accepted: set[str] = set()
    statuses: dict[int, int] = {}
    auth = {"Authorization": f"Bearer {gw.key}"}
    checks = (
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    )

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=cases, authenticated=st.sampled_from([True, True, True, False]))
    def fuzz(case: Any, authenticated: bool) -> None:
        if case.operation.path.endswith("/events"):
            return  # a stream that only ends at a final state: covered by test_follow
        headers = {**(case.headers or {}), **(auth if authenticated else {})}
        response = case.call(base_url=gw.url, headers=headers, timeout=30)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, response.text
        case.validate_response(response, checks=checks)
        if case.operation.method.upper() == "POST" and response.status_code == 202:
            accepted.add(response.json()["event_id"])
        if response.status_code >= 400:
            body = response.json()
            assert body["error"]["code"] and body["error"]["message"], body

    fuzz()
    records = asyncio.run(read_all(kafka_bootstrap, gw.topics.prompts))
    produced = {r.key.decode() for r in records}
    assert produced == accepted, (statuses, len(produced), len(accepted))
    assert any(code >= 400 for code in statuses), statuses

"""Kafka client options, trace headers and the kafka settings (no broker needed)."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError, NotLeaderForPartitionError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from streamproc.bus.kafka import client_options, trace_headers, transport_error
from streamproc.errors import ConfigError
from streamproc.settings import KafkaSettings, load_settings


def test_plaintext_options_name_the_brokers_and_the_worker() -> None:
    options = client_options(KafkaSettings(bootstrap_servers="a:9092, b:9093"), "worker-7")
    assert options["bootstrap_servers"] == ["a:9092", "b:9093"]
    assert options["client_id"] == "worker-7"
    assert options["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in options and "sasl_mechanism" not in options


def test_sasl_options_pass_the_secret_on_but_settings_never_show_it() -> None:
    settings = load_settings(
        kafka={
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "alice",
            "sasl_password": "s3cret",
            "client_id": "ingest",
        }
    )
    options = client_options(settings.kafka, "worker-7")
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("alice", "s3cret")
    assert options["client_id"] == "ingest"
    assert "s3cret" not in settings.model_dump_json()
    assert "s3cret" not in repr(settings)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streamproc-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "client.pem", tmp_path / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_ssl_options_build_a_verifying_context_with_the_client_certificate(
    tmp_path: Path,
) -> None:
    cert, key = _self_signed(tmp_path)
    settings = KafkaSettings(
        security_protocol="SSL", ssl_cafile=cert, ssl_certfile=cert, ssl_keyfile=key
    )
    context = client_options(settings, "w")["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.get_ca_certs()[0]["subject"] == ((("commonName", "streamproc-test"),),)


def test_unreadable_tls_files_are_a_config_error(tmp_path: Path) -> None:
    settings = KafkaSettings(security_protocol="SSL", ssl_cafile=tmp_path / "absent.pem")
    with pytest.raises(ConfigError, match="TLS files"):
        client_options(settings, "w")


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs kafka.sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN", "sasl_username": "u"}, "needs a SASL_"),
        ({"heartbeat_interval_ms": 10_000, "session_timeout_ms": 6000}, "heartbeat"),
        ({"revoke_grace_ms": 60_000, "rebalance_timeout_ms": 30_000}, "revoke_grace_ms"),
        ({"ssl_keyfile": "k.pem"}, "ssl_certfile"),
        ({"prompts_topic": "a b"}, "prompts_topic"),
    ],
)
def test_inconsistent_kafka_settings_are_one_line_config_errors(
    kafka: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(kafka=kafka)


def test_several_prompt_topics_are_comma_separated() -> None:
    assert KafkaSettings(prompts_topic="a,b.c").prompts_topics == ["a", "b.c"]


def test_an_input_trace_id_is_passed_on() -> None:
    assert trace_headers([("trace_id", b"abc"), ("other", b"x")]) == [("trace_id", b"abc")]


def test_a_traceparent_is_passed_on_with_its_trace_id() -> None:
    parent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_headers([("traceparent", parent)]) == [
        ("trace_id", b"4bf92f3577b34da6a3ce929d0e0e4736"),
        ("traceparent", parent),
    ]


def test_without_trace_context_a_new_trace_id_is_made() -> None:
    [(name, first)] = trace_headers([])
    [(_, second)] = trace_headers([("traceparent", b"garbage")])[:1]
    assert name == "trace_id" and len(first) == 32 and int(first, 16) >= 0
    assert second != first


def test_transport_errors_are_one_readable_line() -> None:
    assert str(transport_error("commit", TimeoutError())) == "kafka commit timed out"
    unreachable = transport_error("poll", KafkaConnectionError("no route"))
    assert "cannot reach the brokers" in str(unreachable)
    refused = str(transport_error("publish to r", NotLeaderForPartitionError()))
    assert refused.startswith("kafka publish to r failed: NotLeaderForPartitionError")
    assert "\n" not in refused

"""Kafka client options, trace headers, the kafka settings and the classification of
aiokafka's errors (no broker needed)."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    AuthenticationFailedError,
    BrokerNotAvailableError,
    ClusterAuthorizationFailedError,
    CommitFailedError,
    CorruptRecordException,
    GroupAuthorizationFailedError,
    GroupCoordinatorNotAvailableError,
    IllegalGenerationError,
    IllegalStateError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    NodeNotReadyError,
    NotEnoughReplicasError,
    NotLeaderForPartitionError,
    PolicyViolationError,
    ProducerFenced,
    RebalanceInProgressError,
    RecordListTooLargeError,
    RecordTooLargeError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnknownError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
    UnsupportedSaslMechanismError,
    UnsupportedVersionError,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from streamproc.bus.kafka import (
    absent_topic,
    client_options,
    kafka_error,
    require_topics,
    start_client,
    topic_missing_error,
    trace_headers,
)
from streamproc.errors import (
    ConfigError,
    PermanentError,
    RecordRejected,
    ServiceRefused,
    TransientError,
    TransportError,
)
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


def test_transient_errors_are_one_readable_line() -> None:
    def line(what: str, exc: BaseException) -> str:
        error = kafka_error(what, exc, component="sink", brokers="k:9092")
        assert type(error) is TransportError
        return str(error)

    assert line("commit", TimeoutError()) == "kafka commit timed out"
    assert "cannot reach the brokers" in line("poll", KafkaConnectionError("no route"))
    refused = line("publish to r", NotLeaderForPartitionError())
    assert refused.startswith("kafka publish to r failed: [Error 6] NotLeaderForPartitionError")
    rebalanced = line("commit", CommitFailedError("long\n   text"))
    assert "\n" not in rebalanced and "the group rebalanced" in rebalanced


@pytest.mark.parametrize(
    "exc",
    [
        KafkaConnectionError("Unable to bootstrap"),
        NodeNotReadyError(),
        NotLeaderForPartitionError(),
        LeaderNotAvailableError(),
        RequestTimedOutError(),
        NotEnoughReplicasError(),
        UnknownTopicOrPartitionError(),
        GroupCoordinatorNotAvailableError(),
        # retriable = False in aiokafka, but outages or the group moving on all the same
        CommitFailedError("rebalanced"),
        IllegalGenerationError(),
        UnknownMemberIdError(),
        RebalanceInProgressError(),
        IllegalStateError("Partition p-0 is not assigned"),
        KafkaTimeoutError(),
        BrokerNotAvailableError(),
        CorruptRecordException(),
        UnknownError(),
        KafkaError("Unexpected error during batch delivery"),
        TimeoutError(),
        ConnectionResetError(),
    ],
)
def test_outages_and_group_churn_are_transient(exc: BaseException) -> None:
    error = kafka_error("publish to r", exc, component="sink", brokers="k:9092")
    assert type(error) is TransportError and isinstance(error, TransientError)


@pytest.mark.parametrize(
    "exc",
    [
        MessageSizeTooLargeError(
            "The message is 2000087 bytes when serialized which is larger than the maximum "
            "request size you have configured with the max_request_size configuration"
        ),
        MessageSizeTooLargeError(),  # the broker's answer (message.max.bytes)
        RecordListTooLargeError(),
    ],
)
def test_a_record_too_large_is_rejected_alone(exc: BaseException) -> None:
    error = kafka_error("publish to r", exc, component="sink", brokers="k:9092", topic="r")
    assert isinstance(error, RecordRejected) and error.component == "sink"
    assert str(error).startswith("kafka publish to r refused the record as too large")
    assert "kafka.max_request_size" in str(error) and "\n" not in str(error)


@pytest.mark.parametrize(
    "exc",
    [
        TopicAuthorizationFailedError({"r"}),
        GroupAuthorizationFailedError("workers"),
        ClusterAuthorizationFailedError(),
        TransactionalIdAuthorizationFailed(),
        SaslAuthenticationFailed(),
        AuthenticationFailedError(),
        UnsupportedSaslMechanismError(),
    ],
)
def test_refused_credentials_or_acls_refuse_the_service(exc: BaseException) -> None:
    error = kafka_error("commit", exc, component="source", brokers="k1:9092,k2:9092")
    assert isinstance(error, ServiceRefused) and error.component == "source"
    assert str(error).startswith("kafka commit refused by brokers k1:9092,k2:9092: ")
    assert type(exc).__name__ in str(error) and "ACLs" in str(error)


@pytest.mark.parametrize(
    "exc",
    [
        InvalidTopicError(),
        UnsupportedVersionError(),
        ProducerFenced(),
        PolicyViolationError(),
        RecordTooLargeError("larger than the fetch size 1048576"),
        InvalidReplicationFactorError("only 1 broker"),
    ],
)
def test_other_non_retriable_errors_refuse_the_service(exc: BaseException) -> None:
    error = kafka_error("publish to r", exc, component="sink", brokers="k:9092", topic="r")
    assert isinstance(error, ServiceRefused) and isinstance(error, PermanentError)
    assert str(error).startswith("kafka publish to r refused by brokers k:9092 for topic r: ")


def test_a_topic_gone_while_running_names_topic_and_brokers() -> None:
    error = topic_missing_error("results", component="sink", brokers="k:9092")
    assert isinstance(error, ServiceRefused) and error.component == "sink"
    assert str(error) == (
        "kafka topic results does not exist on brokers k:9092 (create it with: "
        "streamproc topics create)"
    )


async def test_absent_topic_names_the_first_missing_one_or_none() -> None:
    async def listed() -> set[str]:
        return {"prompts", "results"}

    async def no_answer() -> set[str]:
        raise KafkaConnectionError("down")

    assert await absent_topic(listed, ["prompts", "dlq", "gone"], 1.0) == "dlq"
    assert await absent_topic(listed, ["results"], 1.0) is None
    assert await absent_topic(no_answer, ["dlq"], 1.0) is None  # unknown is not "gone"


def test_missing_topics_at_start_name_the_topics_and_the_brokers() -> None:
    with pytest.raises(ConfigError) as caught:
        require_topics(["p"], ["p", "r", "d"], "k1:9092,k2:9092")
    assert str(caught.value) == (
        "kafka topic(s) r, d do not exist on brokers k1:9092,k2:9092 "
        "(create them with: streamproc topics create)"
    )


async def test_a_failed_start_with_sasl_says_the_credentials_may_be_refused() -> None:
    """aiokafka reports a refused SASL handshake as a failed bootstrap: nothing listens on
    port 9, so this is the same failure as far as the client can tell."""
    settings = KafkaSettings(
        bootstrap_servers="127.0.0.1:9",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="p",
    )
    producer = AIOKafkaProducer(**client_options(settings, "w"))
    with pytest.raises(TransportError) as caught:
        await start_client(producer, "producer", settings, component="sink")
    assert str(caught.value).startswith("cannot start kafka producer (brokers 127.0.0.1:9): ")
    assert str(caught.value).endswith("or the brokers refused the kafka.sasl_* credentials")

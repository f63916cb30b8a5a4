"""Static checks of the compose stack, the worker image, Prometheus and the dashboard.

Docker Compose itself is used where it is installed (``docker compose config``); where it
is not, the structure below is still checked in Python. promtool is not used: PromQL goes
through the structural lint of ``tests/deploy/promql.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamproc.settings import MetricsSettings, Settings, load_settings
from tests.deploy.promql import lint, series_in

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
COMPOSE_FILE = COMPOSE / "docker-compose.yml"
WORKERS = ("worker", "worker-cpu")
_DEFAULTED = re.compile(r"\$\{([A-Z0-9_]+):-([^}]*)\}")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def interpolate(value: Any) -> str:
    """``${VAR:-default}`` with the default, as compose does when VAR is unset."""
    return _DEFAULTED.sub(lambda m: m.group(2), str(value))


def worker_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a worker service's environment produces."""
    for name in list(os.environ):
        if name.startswith("STREAMPROC_"):
            monkeypatch.delenv(name)
    for name, value in services()[service]["environment"].items():
        monkeypatch.setenv(name, interpolate(value))
    return load_settings()


def docker_compose() -> list[str] | None:
    """The compose command, if one is installed here."""
    candidates = [["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return command
    return None


def test_the_stack_has_every_service_it_documents() -> None:
    assert set(services()) == {
        "kafka",
        "topics",
        "redis",
        "minio",
        "minio-init",
        "prometheus",
        "grafana",
        "worker",
        "worker-cpu",
        "gateway",
    }
    command = docker_compose()
    if command is not None:  # the real schema check, where Docker Compose is installed
        for profile in ("gpu", "cpu"):
            result = subprocess.run(
                [*command, "-f", str(COMPOSE_FILE), "--profile", profile, "config", "-q"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, result.stderr


def test_kafka_is_a_single_kraft_node_without_zookeeper() -> None:
    kafka = services()["kafka"]
    env = kafka["environment"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert not any("zookeeper" in name for name in services())
    assert "healthcheck" in kafka


def test_the_bucket_job_creates_the_bucket_the_workers_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = services()["minio-init"]
    script = " ".join(job["command"])
    bucket = worker_settings("worker", monkeypatch).storage.s3.bucket
    assert f"mc mb --ignore-existing local/{bucket}" in script
    assert job["depends_on"]["minio"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", WORKERS)
def test_worker_environment_is_valid_configuration(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = worker_settings(service, monkeypatch)
    assert settings.transport == "kafka"
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.cache.backend == "redis"
    assert settings.storage.backend == "s3"
    assert settings.storage.s3.endpoint_url == "http://minio:9000"
    assert settings.metrics.enabled and settings.metrics.host == "0.0.0.0"
    assert settings.log.format == "json"


def test_the_gpu_worker_reserves_a_gpu_and_the_cpu_worker_runs_the_tiny_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpu, cpu = services()["worker"], services()["worker-cpu"]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "deploy" not in cpu
    assert worker_settings("worker", monkeypatch).generation.device == "cuda"
    cpu_settings = worker_settings("worker-cpu", monkeypatch)
    assert (cpu_settings.generation.model, cpu_settings.generation.device) == ("tiny", "cpu")


@pytest.mark.parametrize("service", WORKERS)
def test_workers_wait_for_their_dependencies(service: str) -> None:
    depends = services()[service]["depends_on"]
    for name, condition in depends.items():
        assert name in services()
        if condition["condition"] == "service_healthy":
            assert "healthcheck" in services()[name], name
    assert {"kafka", "topics", "redis", "minio-init"} <= set(depends)


def test_every_mounted_file_and_build_context_exists() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = interpolate(volume.split(":")[0])
            if source.startswith("."):
                if name == "worker" and "models" in source:
                    continue  # the model weights the operator provides
                assert (COMPOSE / source).exists(), (name, source)
        build = service.get("build")
        if build is not None:
            assert (COMPOSE / build["context"] / build["dockerfile"]).is_file()


def test_the_worker_image_runs_streamproc_and_exposes_the_metrics_port() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[1-9]", dockerfile, re.M)
    assert 'ENTRYPOINT ["streamproc"]' in dockerfile
    default_port = MetricsSettings().port
    assert f"EXPOSE {default_port}" in dockerfile
    assert f"STREAMPROC_METRICS__PORT={default_port}" in dockerfile
    for source in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (ROOT / source).exists(), source
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [torch_pin] = [d for d in project["dependencies"] if d.startswith("torch==")]
    if "torch==" in dockerfile:
        assert torch_pin in dockerfile  # the CPU wheel the image may install matches the pin


def test_prometheus_scrapes_every_worker_on_its_metrics_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "streamproc"]
    assert job["metrics_path"] == "/metrics"
    [discovery] = job["dns_sd_configs"]
    for service in WORKERS:
        aliases = services()[service]["networks"]["default"]["aliases"]
        assert discovery["names"] == aliases
        assert discovery["port"] == worker_settings(service, monkeypatch).metrics.port
    mounts = {
        v.split(":")[1]: v.split(":")[0] for v in services()["prometheus"]["volumes"] if ":" in v
    }
    for rule_file in config["rule_files"]:
        assert rule_file in mounts and (COMPOSE / mounts[rule_file]).is_file()
    assert "/etc/prometheus/prometheus.yml" in mounts


def test_the_gateway_serves_the_workers_ledger_and_is_scraped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = worker_settings("gateway", monkeypatch)
    workers = worker_settings("worker-cpu", monkeypatch)
    gateway = services()["gateway"]
    assert gateway["command"] == ["gateway"]
    assert settings.ledger_backend == workers.ledger_backend == "redis"
    assert settings.ledger_redis_url == workers.ledger_redis_url
    assert settings.kafka.prompts_topics == workers.kafka.prompts_topics
    assert settings.gateway_tenants(), "the demo tenant"
    assert f"{settings.gateway.port}:{settings.gateway.port}" in gateway["ports"]
    assert str(settings.gateway.port) in " ".join(gateway["healthcheck"]["test"])
    assert {"kafka", "topics", "redis"} <= set(gateway["depends_on"])
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "streamproc-gateway"]
    [discovery] = job["dns_sd_configs"]
    assert discovery["names"] == gateway["networks"]["default"]["aliases"]
    assert discovery["port"] == settings.gateway.port
    assert f"EXPOSE {settings.gateway.port}" in (ROOT / "Dockerfile").read_text()


def test_every_alert_rule_is_well_formed_and_queries_existing_metrics() -> None:
    rules = yaml.safe_load((COMPOSE / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) >= 5
    for rule in alerts:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Streamproc[A-Za-z0-9]+", rule["alert"])
        assert rule["labels"]["severity"] in {"page", "warn", "info"}
        assert rule["annotations"]["summary"]
        assert lint(rule["expr"]) == [], (rule["alert"], lint(rule["expr"]))
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"])


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (COMPOSE / "grafana" / "dashboards" / "streamproc.json").read_text()
    )
    return data


def exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_every_dashboard_query_lints_and_names_existing_metrics() -> None:
    assert exprs()
    for expr in exprs():
        assert lint(expr) == [], (expr, lint(expr))


def test_the_dashboard_shows_what_operators_look_at() -> None:
    queried = set().union(*(series_in(e) for e in exprs()))
    assert {
        "streamproc_events_finished_total",  # throughput
        "streamproc_videos_generated_total",
        "streamproc_end_to_end_latency_seconds_bucket",  # latency percentiles
        "streamproc_cache_lookups_total",  # hit ratio
        "streamproc_cache_similarity_bucket",
        "streamproc_batch_size_bucket",  # batch sizes
        "streamproc_gpu_memory_used_bytes",  # GPU memory
        "streamproc_consumer_lag_records",  # lag
        "streamproc_committed_offset",
    } <= queried
    latency = [e for e in exprs() if "end_to_end_latency_seconds_bucket" in e]
    for quantile in ("0.5", "0.95", "0.99"):
        assert any(f"histogram_quantile({quantile}," in e for e in latency), quantile


def test_the_dashboard_is_provisioned_against_the_provisioned_datasource() -> None:
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    datasources = yaml.safe_load(
        (COMPOSE / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    [source] = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == source["uid"]
    providers = yaml.safe_load(
        (COMPOSE / "grafana" / "provisioning" / "dashboards" / "streamproc.yml").read_text()
    )
    [provider] = providers["providers"]
    mounts = dict(v.split(":")[1::-1] for v in services()["grafana"]["volumes"])
    assert provider["options"]["path"] in mounts
    assert (COMPOSE / mounts[provider["options"]["path"]] / "streamproc.json").is_file()


def test_the_lint_catches_what_it_is_for() -> None:
    assert lint("rate(streamproc_nope_total[5m])") == ["unknown series streamproc_nope_total"]
    assert lint('streamproc_events_finished_total{stage="x"}') == [
        "streamproc_events_finished_total has no label 'stage'"
    ]
    assert lint("sum by (stage) (rate(streamproc_events_received_total[1m])") != []
    assert lint("sum by (topic) (streamproc_events_in_flight)") == [
        "grouping on unknown label 'topic'"
    ]

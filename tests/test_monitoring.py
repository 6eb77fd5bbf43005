"""deploy/: the alerts (promtool check and unit tests), Prometheus' configuration, the Grafana
dashboard, and the compose `monitoring` profile that runs them, all over metrics we export.

promtool comes from Debian's `prometheus` package, which pip cannot bring: CI installs it
(.ci/run); locally the promtool tests skip until it is on PATH."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from prometheus_client.metrics import MetricWrapperBase

from config import Settings
from devtools.redis_server import RedisServer
from tasks import metrics
from worker.exporter import FleetCollector

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
METRIC = re.compile(r"\b(zapi_queue_[a-z_]+)")


def prometheus_tool(name: str) -> str:
    """The path of Debian's ``prometheus`` package's ``name`` (promtool, prometheus); skips
    the test with one line when it is absent, fails it in CI (which installs the package)."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not on PATH (CI must run these tests: see .ci/run)")
        pytest.skip(f"{name} not on PATH: apt-get install prometheus (CI does)")
    return found


@pytest.fixture(scope="module")
def promtool() -> str:
    return prometheus_tool("promtool")


def run(*args: str) -> str:
    completed = subprocess.run(
        args, cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def test_alert_rules_are_valid(promtool: str) -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    count = sum(len(group["rules"]) for group in rules["groups"])
    assert count >= 8
    assert f"SUCCESS: {count} rules found" in run(promtool, "check", "rules", "alerts.yml")


def test_alerts_fire_on_trouble_and_stay_quiet_on_a_healthy_fleet(promtool: str) -> None:
    run(promtool, "test", "rules", "alerts.test.yml")
    tested = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())
    fired = {
        case["alertname"]
        for test in tested["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    assert fired == {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


def test_prometheus_configuration_is_valid(promtool: str) -> None:
    run(promtool, "check", "config", "prometheus.yml")


SUFFIXES = ("", "_total", "_bucket", "_count", "_sum")


def exported_names() -> set[str]:
    """Every series name the workers and the exporter serve."""
    families = [
        family
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
        for family in metric.collect()
    ]
    with RedisServer() as redis_server:
        settings = Settings(
            celery_broker_url=f"{redis_server.url}/0",
            celery_result_backend=f"{redis_server.url}/1",
            zapi_instance_id="any",
        )
        app = Celery(broker=f"{redis_server.url}/0")
        families += list(FleetCollector(settings, ping_timeout=0.1, app=app).collect())
        app.close()
    return {f"{family.name}{suffix}" for family in families for suffix in SUFFIXES}


def queries() -> dict[str, str]:
    """Where each PromQL expression of deploy/ is -> the expression."""
    found = {}
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found[f"alert {rule['alert']}"] = rule["expr"]
    dashboard = json.loads((GRAFANA / "zapi-queue.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            found[f"panel {panel['title']} {target['refId']}"] = target["expr"]
    return found


def test_alerts_and_dashboard_only_query_metrics_we_export() -> None:
    exported = exported_names()
    used = {name for expr in queries().values() for name in METRIC.findall(expr)}
    assert used, "no query found"
    assert used - exported == set()


def test_the_dashboard_covers_what_operators_page_on() -> None:
    dashboard = json.loads((GRAFANA / "zapi-queue.json").read_text())
    assert dashboard["uid"] == "zapi-queue"
    used = " ".join(queries().values())
    for name in (
        "zapi_queue_attempts_total",
        "zapi_queue_send_duration_seconds_bucket",
        "zapi_queue_queue_depth",
        "zapi_queue_oldest_queued_job_age_seconds",
        "zapi_queue_dead_letters",
        "zapi_queue_workers_alive",
        "zapi_queue_instance_paused_seconds",
        "zapi_queue_delivery_states_total",
        "zapi_queue_backlog_jobs",
        "zapi_queue_scaling_backlog_jobs",
    ):
        assert name in used, name
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "prometheus"
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["uid"] == "prometheus"


def test_the_monitoring_profile_scrapes_every_worker_and_the_exporter() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("exporter", "prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        pinned = r"\$\{[A-Z]+_IMAGE:-[a-z/]+:v?\d+\.\d+\.\d+@sha256:[0-9a-f]{64}\}"
        assert re.fullmatch(pinned, image), f"{name} not pinned: {image}"
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    workers = jobs["zapi-queue-workers"]["dns_sd_configs"][0]
    assert workers["names"] == ["worker"]
    assert str(workers["port"]) == services["worker"]["environment"]["ZAPI_METRICS_PORT"]
    assert services["worker"]["environment"]["ZAPI_METRICS_HOST"] == "0.0.0.0"  # noqa: S104
    exporter_command = services["exporter"]["command"]
    port = exporter_command[exporter_command.index("--port") + 1]
    assert jobs["zapi-queue-exporter"]["static_configs"][0]["targets"] == [f"exporter:{port}"]
    mounts = " ".join(services["prometheus"]["volumes"] + services["grafana"]["volumes"])
    assert "./deploy/prometheus:/etc/prometheus" in mounts
    assert "./deploy/grafana/zapi-queue.json:/var/lib/grafana/dashboards/" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning" in mounts
    assert config["rule_files"] == ["alerts.yml"]

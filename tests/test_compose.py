"""docker-compose.yml, without a Docker engine: valid against the Compose specification's JSON
schema, and running the very commands the tests run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis
import yaml
from celery import Celery

from config import Settings
from tests.bodies import unique_body
from worker.dev.ports import free_port
from worker.dev.processes import WebhookProcess, WorkerProcess
from worker.dev.redis_server import RedisServer, find_redis_server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * units[suffix]
    return float(duration)


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(compose, schema)


def test_services_run_the_commands_the_tests_run(compose: dict[str, Any]) -> None:
    services = compose["services"]
    tested = WorkerProcess({}, ROOT / "unused.log").args
    assert services["worker"]["command"] == ["celery", *tested[1:4]]
    assert services["worker"]["command"] == ["celery", "-A", "worker", "worker"]
    assert services["flower"]["command"][:4] == ["celery", "-A", "worker", "flower"]
    assert services["zapi-sim"]["command"][:3] == ["python", "-m", "worker.dev.zapi_sim"]
    tested = WebhookProcess({}, ROOT / "unused.log", port=8000).args
    assert (
        services["webhook"]["command"][:2] == ["zapi-queue", tested[1]] == ["zapi-queue", "webhook"]
    )
    assert services["webhook"]["command"][2:4] == ["--host", "0.0.0.0"]  # noqa: S104 - the proxy
    assert services["webhook"]["healthcheck"]["test"]
    assert services["zapi-sim"]["profiles"] == ["sim"]
    assert "zapi-sim" not in str(services["worker"].get("depends_on", ""))


def test_redis_persists_and_services_are_checked(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    for name in ("redis", "worker"):
        assert services[name]["healthcheck"]["test"]
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])
    # A warm shutdown finishes the sends in flight: the grace period outlasts one send.
    longest_send = Settings.model_fields["zapi_timeout"].default + 5
    assert seconds(services["worker"]["stop_grace_period"]) > longest_send


def test_redis_refuses_writes_when_full_instead_of_evicting_jobs(compose: dict[str, Any]) -> None:
    """noeviction with a memory limit: a full Redis refuses writes instead of silently dropping
    queued jobs or idempotency records; the limit is REDIS_MAXMEMORY, documented in .env.example."""
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    limit = command[command.index("--maxmemory") + 1]
    default = re.fullmatch(r"\$\{REDIS_MAXMEMORY:-(\d+)([kmg]b)\}", limit)
    assert default, limit
    assert "REDIS_MAXMEMORY=" in (ROOT / ".env.example").read_text()
    # The very arguments, defaults substituted, start a real redis-server that reports them.
    args = [interpolate(arg, {}) for arg in command[1:]]
    with RedisServer(extra_args=args) as server:
        client = server.client()
        memory = client.info("memory")
        client.close()
    assert memory["maxmemory_policy"] == "noeviction"
    unit = {"kb": 1024, "mb": 1024**2, "gb": 1024**3}[default[2]]
    assert memory["maxmemory"] == int(default[1]) * unit


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR:-default}`` (nested too), from ``env``."""
    pattern = re.compile(r"\$\{([A-Z_]+):-([^${}]*)\}")
    while (found := pattern.search(value)) is not None:
        replacement = env.get(found[1]) or found[2]
        value = value[: found.start()] + replacement + value[found.end() :]
    return value


def test_redis_takes_an_optional_password_that_every_service_url_carries(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    command = services["redis"]["command"]
    assert interpolate(command[command.index("--requirepass") + 1], {}) == ""  # none by default
    env = {"REDIS_PASSWORD": "s3cret-pw"}
    args = [interpolate(arg, env) for arg in command[1:]]
    # (RedisServer is told the password too, for its own readiness ping.)
    with RedisServer(password=env["REDIS_PASSWORD"], extra_args=args) as server:
        anonymous = redis.Redis(port=server.port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        urls = services["worker"]["environment"]
        broker = interpolate(urls["CELERY_BROKER_URL"], env).replace("@redis:6379", "@127.0.0.1:"
                 f"{server.port}")  # fmt: skip
        assert broker.startswith("redis://:s3cret-pw@")
        client = redis.Redis.from_url(broker)
        assert client.ping()
        client.close()
    for name in ("worker", "flower", "webhook", "exporter"):
        environment = services[name]["environment"]
        assert "${REDIS_PASSWORD:-}" in environment["CELERY_BROKER_URL"], name
        assert "${REDIS_PASSWORD:-}" in environment["CELERY_RESULT_BACKEND"], name
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == "${REDIS_PASSWORD:-}"


def test_flower_gets_no_zapi_token_and_is_checked(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert "env_file" not in flower
    assert not [name for name in flower["environment"] if name.startswith("ZAPI_")]
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])


def test_compose_hardening(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+-alpine", services["redis"]["image"])
    for name, service in services.items():
        assert service["logging"]["driver"] == "json-file", name
        assert service["logging"]["options"]["max-size"], name
        if service.get("image") == "zapi-queue:latest":
            assert service["build"] == ".", f"{name} runs our image but cannot build it"
    limits = services["worker"]["deploy"]["resources"]["limits"]
    assert limits["cpus"]
    assert limits["memory"]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".venv", ".env", ".git"} <= set(ignored)


def test_env_example_is_shipped_and_env_is_not(compose: dict[str, Any]) -> None:
    assert (ROOT / ".env.example").exists()
    names = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
             if line and not line.startswith("#")}  # fmt: skip
    assert {"ZAPI_INSTANCE_ID", "ZAPI_INSTANCE_TOKEN", "ZAPI_CLIENT_TOKEN"} <= names
    tracked = subprocess.run(
        ["git", "ls-files", ".env"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert tracked.stdout.strip() == ""


def test_dockerfile_runs_as_non_root_with_pinned_dependencies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("root", "0")
    assert "pip install -c constraints.txt ." in text
    pins = (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
    pinned = {line.split("==")[0].lower() for line in pins if "==" in line}
    assert {"celery", "kombu", "redis", "httpx", "pydantic", "flower", "tenacity"} <= pinned


def env_file(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {name: value for name, value in pairs}


def test_the_sim_profile_is_wired_to_one_settings_file(compose: dict[str, Any]) -> None:
    sim = env_file(ROOT / "deploy" / "sim.env")
    assert sim["COMPOSE_PROFILES"] == "sim"
    assert (ROOT / sim["ZAPI_ENV_FILE"]) == ROOT / "deploy" / "sim.env"
    services = compose["services"]
    for name in ("worker", "webhook", "zapi-sim", "exporter"):
        assert services[name]["env_file"] == "${ZAPI_ENV_FILE:-.env}", name
    command = services["zapi-sim"]["command"]
    assert sim["ZAPI_BASE_URL"] == f"http://zapi-sim:{command[command.index('--port') + 1]}"
    assert sim["ZAPI_SIM_WEBHOOK_URL"] == (
        f"http://webhook:8000/webhooks/zapi/{sim['ZAPI_WEBHOOK_SECRET']}"
    )


@pytest.mark.e2e
def test_the_sim_profile_delivers_out_of_the_box(compose: dict[str, Any], tmp_path: Path) -> None:
    """The fake as compose starts it (no credentials given) and a worker with deploy/sim.env's
    settings, service names swapped for loopback: a job is delivered, no 403."""
    sim = env_file(ROOT / "deploy" / "sim.env")
    command = compose["services"]["zapi-sim"]["command"]
    port = free_port()
    args = [sys.executable, *command[1:]]
    args[args.index("--host") + 1], args[args.index("--port") + 1] = "127.0.0.1", str(port)
    env = {k: v for k, v in sim.items() if not k.startswith(("COMPOSE_", "ZAPI_SIM_"))}
    with (
        RedisServer() as redis_server,
        subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as fake,
    ):
        try:
            assert fake.stdout is not None
            printed = [fake.stdout.readline().strip() for _ in range(5)]
            # What it prints a worker needs is what deploy/sim.env gives.
            for name in ("ZAPI_INSTANCE_ID", "ZAPI_INSTANCE_TOKEN", "ZAPI_CLIENT_TOKEN"):
                assert f"export {name}={sim[name]}" in printed
            local = {k: v.replace("redis://redis:6379", redis_server.url) for k, v in env.items()}
            local["ZAPI_BASE_URL"] = f"http://127.0.0.1:{port}"
            worker_env = {**os.environ, **local, "PYTHONUNBUFFERED": "1"}
            with WorkerProcess(worker_env, tmp_path / "worker.log"):
                producer = Celery(
                    broker=local["CELERY_BROKER_URL"], backend=local["CELERY_RESULT_BACKEND"]
                )
                reply = producer.send_task("zapi.order_status_update", args=[unique_body()]).get(
                    timeout=30
                )
                producer.close()
            assert set(reply) == {"zaapId", "messageId", "id"}
        finally:
            fake.terminate()


def test_the_ha_profile_is_a_replica_and_three_sentinels_on_sentinel_urls(
    compose: dict[str, Any],
) -> None:
    ha = env_file(ROOT / "deploy" / "ha.env")
    assert ha["COMPOSE_PROFILES"] == "ha"
    services = compose["services"]
    sentinels = sorted(n for n, s in services.items() if "sentinel" in str(s.get("command")))
    assert sentinels == ["sentinel-1", "sentinel-2", "sentinel-3"]
    assert all(services[name]["profiles"] == ["ha"] for name in [*sentinels, "redis-replica"])
    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :] == ["redis", "6379"]
    for db, name in enumerate(("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")):
        hosts = [chunk.split("@")[-1].removeprefix("sentinel://") for chunk in ha[name].split(";")]
        assert hosts == [f"{sentinel}:26379/{db}" for sentinel in sentinels], name
    master = ha["REDIS_SENTINEL_MASTER"]
    assert services["sentinel-1"]["environment"]["REDIS_SENTINEL_MASTER"].endswith(f"-{master}}}")
    # Every service of ours gets the master's name with the URLs.
    for name in ("worker", "flower", "webhook", "exporter"):
        assert "REDIS_SENTINEL_MASTER" in services[name]["environment"], name


@pytest.mark.e2e
def test_the_ha_profiles_sentinel_script_watches_the_primary_it_is_given(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """deploy/sentinel/start-sentinel.sh as compose runs it, with the tests' redis-server: it
    monitors the primary, with its password and its own."""
    script = compose["services"]["sentinel-1"]["volumes"][0].split(":")[0]
    port = free_port()
    with RedisServer(password="redis-pw") as primary:
        env = {
            **os.environ,
            "REDIS_SERVER": find_redis_server(),
            "REDIS_PRIMARY_HOST": "127.0.0.1",
            "REDIS_PRIMARY_PORT": str(primary.port),
            "REDIS_PASSWORD": "redis-pw",
            "REDIS_SENTINEL_PASSWORD": "sentinel-pw",
            "SENTINEL_PORT": str(port),
            "SENTINEL_DIR": str(tmp_path),
        }
        with subprocess.Popen(["sh", str(ROOT / script)], env=env) as sentinel:
            try:
                client = redis.Redis(port=port, password="sentinel-pw", socket_timeout=1)
                deadline = time.monotonic() + 15
                state: Any = {}
                while time.monotonic() < deadline and state.get("flags") != "master":
                    with contextlib.suppress(redis.ConnectionError):
                        state = client.sentinel_master("zapi-master")
                    time.sleep(0.1)
                assert state["flags"] == "master"  # reached and authenticated, not s_down
                assert int(state["port"]) == primary.port
                client.close()
            finally:
                sentinel.terminate()

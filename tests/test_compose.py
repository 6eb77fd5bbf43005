"""docker-compose.yml without a Docker engine, interpolated as Compose does (tests/compose_model.py)
from the env files a user has: valid against the Compose specification, every Redis client given
the password, no Z-API token where it is not needed, no working default password, every variable
documented, every image pinned, and the very commands and settings run for real."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import redis
from celery import Celery
from kombu.utils.url import url_to_parts

from config import Settings
from config.redis_url import SentinelURL
from config.tracing import OTEL_VARIABLES
from devtools.ports import free_port
from devtools.processes import WebhookProcess, WorkerProcess
from devtools.redis_server import RedisServer, find_redis_server
from tests.bodies import unique_body
from tests.compose_model import (
    ROOT,
    MissingVariable,
    containers,
    dotenv,
    interpolate,
    load,
    substitution_env,
)
from worker.cli.main import main as cli_main
from worker.drain import EXIT_MARGIN
from worker.exporter import watched_instances

SIM_ENV = ROOT / "deploy" / "sim.env"
HA_ENV = ROOT / "deploy" / "ha.env"
#: What a user fills in after copying .env.example (distinctive, to find any leak).
FILLED = {
    "REDIS_PASSWORD": "rpw-7Yk_2.q~x",
    "ZAPI_INSTANCE_ID": "3C0FFEE",
    "ZAPI_INSTANCE_TOKEN": "itok-SECRET-1f2e3d",
    "ZAPI_CLIENT_TOKEN": "ctok-SECRET-9a8b7c",
    "ZAPI_WEBHOOK_SECRET": "hook-SECRET-5d6e",
    "FLOWER_BASIC_AUTH": "ops:flower-SECRET-4c",
    "ZAPI_CONSOLE_AUTH": "ops:console-SECRET-8d",
    "GRAFANA_ADMIN_PASSWORD": "graf-SECRET-3b",
}
TOKENS = ("ZAPI_INSTANCE_TOKEN", "ZAPI_CLIENT_TOKEN", "ZAPI_INSTANCES")
REDIS_CLIENTS = ("worker", "flower", "webhook", "console", "exporter")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


def project(tmp_path: Path, edits: dict[str, str] | None) -> Path:
    """A project directory as a user has it: deploy/ as shipped, and (unless ``edits`` is None)
    .env copied from .env.example with ``edits`` written over its lines."""
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    if edits is not None:
        write_env(tmp_path, edits)
    return tmp_path


def write_env(where: Path, edits: dict[str, str]) -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    for name, value in edits.items():
        at = [i for i, line in enumerate(lines) if line.startswith(f"{name}=")]
        if at:
            lines[at[0]] = f"{name}={value}"
        else:
            lines.append(f"{name}={value}")
    (where / ".env").write_text("\n".join(lines) + "\n")


def up(
    where: Path, env_files: list[Path] | None = None, exported: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """The containers ``docker compose [--env-file ...] up`` would create in ``where``."""
    files = env_files if env_files is not None else [p for p in [where / ".env"] if p.exists()]
    return containers(substitution_env(files, exported), where)


def password_of(url: str) -> str | None:
    """The password kombu (the broker) and redis-py (results, state) read from ``url``: they
    must agree."""
    first = url.split(";")[0]
    kombu_password = url_to_parts(first).password
    if not first.startswith("sentinel://"):
        parsed = redis.connection.parse_url(first)  # type: ignore[no-untyped-call]
        assert parsed.get("password") == kombu_password
    return kombu_password


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


def test_the_model_interpolates_as_compose_does() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${NONE-d} $$SET $SET", env) == (
        "v d  d $SET v"
    )
    assert interpolate("${NONE:-${SET}x} ${SET:+alt} ${EMPTY:+alt}", env) == "vx alt "
    assert interpolate("${EMPTY?fine}", env) == ""
    with pytest.raises(MissingVariable, match="EMPTY is missing a value: say v"):
        interpolate("${EMPTY:?say ${SET}}", env)


def test_a_copied_env_example_refuses_until_each_required_value_is_set(tmp_path: Path) -> None:
    """The shipped placeholders are empty and stop `up`, one after the other, each named: there
    is no working default password."""
    where = project(tmp_path, None)
    missing: list[str] = []
    edits: dict[str, str] = {}
    for _ in range(6):
        write_env(where, edits)
        try:
            up(where)
            break
        except MissingVariable as stop:
            missing.append(stop.name)
            edits[stop.name] = FILLED[stop.name]
    assert missing == [
        "REDIS_PASSWORD",
        "FLOWER_BASIC_AUTH",
        "ZAPI_WEBHOOK_SECRET",
        "ZAPI_CONSOLE_AUTH",
    ]


def test_env_example_leaves_the_urls_to_compose(tmp_path: Path) -> None:
    """The bug of #27: .env.example's CELERY_BROKER_URL beat compose's URL with the password.
    The example leaves them commented; even a stale .env that sets them changes nothing."""
    example = dotenv(ROOT / ".env.example")
    assert "CELERY_BROKER_URL" not in example
    assert "CELERY_RESULT_BACKEND" not in example
    stale = {**FILLED, "CELERY_BROKER_URL": "redis://redis:6379/0"}
    services = up(project(tmp_path, stale))
    for name in REDIS_CLIENTS:
        if name not in services:
            continue
        environ = services[name]["environ"]
        for variable in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
            assert password_of(environ[variable]) == FILLED["REDIS_PASSWORD"], (name, variable)


@pytest.mark.parametrize("stack", ["env", "env+monitoring", "sim", "ha", "ha-shell"])
def test_every_redis_client_gets_the_password_and_only_what_it_needs(
    tmp_path: Path, stack: str
) -> None:
    where = project(tmp_path, FILLED)
    shell: dict[str, str] = {}
    files = [where / ".env"]
    if stack == "env+monitoring":
        shell = {"COMPOSE_PROFILES": "monitoring"}
    elif stack == "sim":
        files = [SIM_ENV]
    elif stack == "ha":
        files = [where / ".env", HA_ENV]
    elif stack == "ha-shell":
        # podman-compose's way: ha.env sourced by a real shell, .env read as usual.
        listed = subprocess.run(
            ["sh", "-c", f"set -a; . {HA_ENV}; set +a; env -0"],
            capture_output=True, text=True, check=True, env={},
        ).stdout  # fmt: skip
        shell = dict(item.split("=", 1) for item in listed.split("\0") if "=" in item)
        shell = {k: v for k, v in shell.items() if k in dotenv(HA_ENV)}
    services = up(where, files, shell)
    expected = dotenv(SIM_ENV)["REDIS_PASSWORD"] if stack == "sim" else FILLED["REDIS_PASSWORD"]
    clients = [n for n in REDIS_CLIENTS if n in services]
    assert {"worker", "flower", "webhook", "console"} <= set(clients)
    assert ("exporter" in clients) == (stack == "env+monitoring")
    for name in clients:
        environ = services[name]["environ"]
        for variable in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
            assert password_of(environ[variable]) == expected, (name, variable)
        if stack.startswith("ha"):
            parsed = SentinelURL.parse(environ["CELERY_BROKER_URL"])
            assert [host for host, _ in parsed.sentinels] == [
                "sentinel-1",
                "sentinel-2",
                "sentinel-3",
            ]
            assert parsed.password == expected
            assert environ["REDIS_SENTINEL_MASTER"] == "zapi-master"
        # What the process will read is valid settings (URLs, master name, password rules).
        given = {k.lower(): v for k, v in environ.items() if k.lower() in Settings.model_fields}
        assert Settings.model_validate(given).redis_password is not None
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--requirepass") + 1] == expected
    assert services["redis"]["environ"]["REDISCLI_AUTH"] == expected
    for name, service in services.items():
        if name == "worker":
            continue
        leaked = [v for v in TOKENS if v in service["environ"]]
        leaked += [v for v in TOKENS[:2] if FILLED[v] in json.dumps(service["environ"])]
        assert not leaked, (name, leaked)
    if stack == "sim":  # .env replaced: nothing real reaches the sim stack
        assert FILLED["ZAPI_INSTANCE_TOKEN"] not in json.dumps(services)
        assert services["worker"]["environ"]["ZAPI_BASE_URL"] == "http://zapi-sim:8080"
    else:
        assert services["worker"]["environ"]["ZAPI_INSTANCE_TOKEN"] == FILLED["ZAPI_INSTANCE_TOKEN"]
    assert services["flower"]["environ"]["FLOWER_BASIC_AUTH"]


def test_the_exporter_reports_the_instance_without_its_tokens(tmp_path: Path) -> None:
    """What compose gives the exporter (no token) still names the instance for its gauges."""
    environ = up(project(tmp_path, FILLED), exported={"COMPOSE_PROFILES": "monitoring"})["exporter"]
    given = {
        k.lower(): v for k, v in environ["environ"].items() if k.lower() in Settings.model_fields
    }
    settings = Settings.model_validate(given)
    assert settings.zapi_instance_token is None
    assert watched_instances(settings) == [("3C0FFEE", "3C0FFEE", 5.0)]


def test_ha_env_alone_fails_loudly_instead_of_dropping_env(tmp_path: Path) -> None:
    where = project(tmp_path, FILLED)
    with pytest.raises(MissingVariable) as stop:
        up(where, [HA_ENV])
    assert stop.value.name == "REDIS_PASSWORD"


def test_each_service_variable_is_a_setting_the_process_reads(compose: dict[str, Any]) -> None:
    """No typo in the lists: every variable given to a service of ours is a setting, or read by
    Flower or the fake."""
    settings = {name.upper() for name in Settings.model_fields}
    others = {"FLOWER_BASIC_AUTH", "ZAPI_SIM_WEBHOOK_URL", "ZAPI_METRICS_PORT", "ZAPI_METRICS_HOST"}
    others |= set(OTEL_VARIABLES)  # read by OpenTelemetry's SDK (worker/tracing_setup.py)
    for name, service in compose["services"].items():
        if service.get("image") != "zapi-queue:latest":
            continue
        unknown = set(service.get("environment") or {}) - settings - others
        assert not unknown, (name, unknown)


def test_every_variable_is_documented(compose: dict[str, Any]) -> None:
    table = (ROOT / "docs" / "compose-variables.md").read_text()
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    for path in (ROOT / ".env.example", SIM_ENV, HA_ENV):
        used |= set(dotenv(path)) - {name.upper() for name in Settings.model_fields}
    for service in compose["services"].values():
        used |= {k for k, v in (service.get("environment") or {}).items() if v is None}
    used |= {"ZAPI_FLOWER_ALLOW_UNAUTHENTICATED", "PYTHON_IMAGE"}
    undocumented = sorted(name for name in used if f"`{name}`" not in table)
    assert not undocumented


def test_images_are_pinned_by_digest_and_substitutable(compose: dict[str, Any]) -> None:
    pinned = r"\$\{([A-Z]+_IMAGE):-([a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64})\}"
    images = {s["image"] for s in compose["services"].values() if "build" not in s}
    for image in images:
        assert re.fullmatch(pinned, image), image
        assert interpolate(image, {re.fullmatch(pinned, image)[1]: "stand-in"}) == "stand-in"  # type: ignore[index]
    dockerfile = (ROOT / "Dockerfile").read_text()
    arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert arg is not None
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS app$", dockerfile, re.M)
    assert dockerfile.rstrip().endswith("FROM app")  # the default target: no devtools/
    build_arg = compose["x-app"]["build"]["args"]["PYTHON_IMAGE"]
    assert build_arg == f"${{PYTHON_IMAGE:-{arg[1]}}}"
    sim = compose["services"]["zapi-sim"]["build"]
    assert (sim["target"], sim["args"]) == ("sim", compose["x-app"]["build"]["args"])
    assert re.fullmatch(r"python:[\w.-]+@sha256:[0-9a-f]{64}", arg[1])


def test_services_run_the_commands_the_tests_run(compose: dict[str, Any]) -> None:
    services = compose["services"]
    tested = WorkerProcess({}, ROOT / "unused.log").args
    assert services["worker"]["command"] == ["celery", *tested[1:4]]
    assert services["worker"]["command"] == ["celery", "-A", "worker", "worker"]
    assert services["flower"]["command"][:4] == ["celery", "-A", "worker", "flower"]
    assert services["zapi-sim"]["command"][:3] == ["python", "-m", "devtools.zapi_sim"]
    tested = WebhookProcess({}, ROOT / "unused.log", port=8000).args
    assert (
        services["webhook"]["command"][:2] == ["zapi-queue", tested[1]] == ["zapi-queue", "webhook"]
    )
    assert services["webhook"]["command"][2:4] == ["--host", "0.0.0.0"]  # noqa: S104 - the proxy
    assert services["webhook"]["healthcheck"]["test"]
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])
    assert services["console"]["command"][:2] == ["zapi-queue", "console"]
    assert "/healthz" in " ".join(services["console"]["healthcheck"]["test"])
    assert services["zapi-sim"]["profiles"] == ["sim"]
    assert "zapi-sim" not in str(services["worker"].get("depends_on", ""))


def test_redis_persists_and_services_are_checked(compose: dict[str, Any]) -> None:
    services = compose["services"]
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    for name in ("redis", "worker"):
        assert services[name]["healthcheck"]["test"]
    probe = services["worker"]["healthcheck"]["test"]
    assert probe == ["CMD", "zapi-queue", "probe", "live"]  # no broker round trip
    group = cli_main.get_command(click.Context(cli_main), probe[2])
    assert isinstance(group, click.Group)
    assert group.get_command(click.Context(group), probe[3]) is not None
    fields = Settings.model_fields
    deadline = fields["zapi_connect_timeout"].default + fields["zapi_timeout"].default
    drain = fields["celery_worker_drain_timeout"].default
    assert drain > deadline  # a send started as the SIGTERM came ends within the drain
    # The drained worker has exited before Docker's SIGKILL (docs/operations.md).
    assert seconds(services["worker"]["stop_grace_period"]) >= drain + EXIT_MARGIN


def test_redis_runs_as_compose_starts_it_full_and_with_its_password(tmp_path: Path) -> None:
    """The very arguments (a copied .env, filled in) start a real redis-server: noeviction, the
    memory limit, the password; the worker's own URL, host swapped, authenticates."""
    services = up(project(tmp_path, FILLED))
    command = services["redis"]["command"]
    password = FILLED["REDIS_PASSWORD"]
    with RedisServer(password=password, extra_args=command[1:]) as server:
        anonymous = redis.Redis(port=server.port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        broker = services["worker"]["environ"]["CELERY_BROKER_URL"]
        client = redis.Redis.from_url(broker.replace("@redis:6379", f"@127.0.0.1:{server.port}"))
        memory = client.info("memory")
        client.close()
    assert memory["maxmemory_policy"] == "noeviction"
    assert memory["maxmemory"] == 512 * 1024**2
    limit = command[command.index("--maxmemory") + 1]
    assert limit == dotenv(ROOT / ".env.example")["REDIS_MAXMEMORY"] == "512mb"


def test_compose_hardening(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert service["logging"]["driver"] == "json-file", name
        assert service["logging"]["options"]["max-size"], name
        if service.get("image") == "zapi-queue:latest":
            assert service["build"]["context"] == ".", f"{name} runs our image but cannot build it"
    limits = services["worker"]["deploy"]["resources"]["limits"]
    assert limits["cpus"]
    assert limits["memory"]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".venv", ".env", ".git"} <= set(ignored)
    for port in [p for s in services.values() for p in s.get("ports", [])]:
        assert port.startswith("127.0.0.1:"), port


def test_env_example_is_shipped_and_env_is_not() -> None:
    names = set(dotenv(ROOT / ".env.example"))
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
    assert 'pip install -c constraints.txt ".[otel]"' in text  # tracing ships in the image
    pins = (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
    pinned = {line.split("==")[0].lower() for line in pins if "==" in line}
    assert {"celery", "kombu", "redis", "httpx", "pydantic", "flower", "tenacity"} <= pinned
    assert {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"} <= pinned


def test_the_sim_profile_is_wired_to_one_settings_file(compose: dict[str, Any]) -> None:
    sim = dotenv(SIM_ENV)
    assert sim["COMPOSE_PROFILES"] == "sim"
    assert (ROOT / sim["ZAPI_ENV_FILE"]) == SIM_ENV
    assert compose["services"]["worker"]["env_file"] == "${ZAPI_ENV_FILE:-.env}"
    command = compose["services"]["zapi-sim"]["command"]
    assert sim["ZAPI_BASE_URL"] == f"http://zapi-sim:{command[command.index('--port') + 1]}"
    assert sim["ZAPI_SIM_WEBHOOK_URL"] == (
        f"http://webhook:8000/webhooks/zapi/{sim['ZAPI_WEBHOOK_SECRET']}"
    )


@contextlib.contextmanager
def fake_as_compose_starts_it(compose: dict[str, Any], port: int) -> Iterator[list[str]]:
    command = compose["services"]["zapi-sim"]["command"]
    args = [sys.executable, *command[1:]]
    args[args.index("--host") + 1], args[args.index("--port") + 1] = "127.0.0.1", str(port)
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as fake:
        try:
            assert fake.stdout is not None
            yield [fake.stdout.readline().strip() for _ in range(5)]
        finally:
            fake.terminate()


@pytest.mark.e2e
def test_the_sim_profile_delivers_out_of_the_box(compose: dict[str, Any], tmp_path: Path) -> None:
    """`--env-file deploy/sim.env`, no .env: the worker with exactly the environment compose
    gives it (service names swapped for loopback) delivers through the fake, no 403."""
    worker = up(project(tmp_path, None), [SIM_ENV])["worker"]["environ"]
    sim_password = dotenv(SIM_ENV)["REDIS_PASSWORD"]
    port = free_port()
    with (
        RedisServer(password=sim_password) as redis_server,
        fake_as_compose_starts_it(compose, port) as printed,
    ):
        for name in ("ZAPI_INSTANCE_ID", "ZAPI_INSTANCE_TOKEN", "ZAPI_CLIENT_TOKEN"):
            assert f"export {name}={worker[name]}" in printed
        here = f"@127.0.0.1:{redis_server.port}"
        local = {k: v.replace("@redis:6379", here) for k, v in worker.items()}
        local = {k: v for k, v in local.items() if not k.startswith(("COMPOSE_", "ZAPI_SIM_"))}
        local |= {
            "ZAPI_BASE_URL": f"http://127.0.0.1:{port}",
            "ZAPI_METRICS_PORT": str(free_port()),
        }
        local["ZAPI_METRICS_HOST"] = "127.0.0.1"
        with WorkerProcess({**os.environ, **local, "PYTHONUNBUFFERED": "1"}, tmp_path / "w.log"):
            producer = Celery(
                broker=local["CELERY_BROKER_URL"], backend=local["CELERY_RESULT_BACKEND"]
            )
            reply = producer.send_task("zapi.order_status_update", args=[unique_body()]).get(
                timeout=30
            )
            producer.close()
    assert set(reply) == {"zaapId", "messageId", "id"}


def test_the_ha_profile_is_a_replica_and_three_sentinels(compose: dict[str, Any]) -> None:
    services = compose["services"]
    sentinels = sorted(n for n, s in services.items() if "sentinel" in str(s.get("command")))
    assert sentinels == ["sentinel-1", "sentinel-2", "sentinel-3"]
    assert all(services[name]["profiles"] == ["ha"] for name in [*sentinels, "redis-replica"])
    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :] == ["redis", "6379"]
    ha = dotenv(HA_ENV)
    assert ha["COMPOSE_PROFILES"] == "ha"
    assert services["sentinel-1"]["environment"]["REDIS_SENTINEL_MASTER"].endswith(
        f"-{ha['REDIS_SENTINEL_MASTER']}}}"
    )


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

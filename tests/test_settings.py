"""Settings: env names of the contract, clear errors, and a worker that refuses to start."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from config import ConfigurationError, Settings
from config.settings import load_settings
from devtools.processes import celery_command
from worker.celery_app import celery_config

CREDENTIALS = {
    "ZAPI_INSTANCE_ID": "inst",
    "ZAPI_INSTANCE_TOKEN": "tok-secret",
    "ZAPI_CLIENT_TOKEN": "ct-secret",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("ZAPI_", "CELERY_", "WORKER_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return monkeypatch


def test_contract_names_and_defaults(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in CREDENTIALS.items():
        clean_env.setenv(name, value)
    clean_env.setenv("CELERY_BROKER_URL", "redis://:pw@redis:6379/0")
    clean_env.setenv("ZAPI_RATE_LIMIT", "2.5")
    clean_env.setenv("ZAPI_MAX_ATTEMPTS", "4")
    settings = Settings()
    assert settings.zapi_url == "https://api.z-api.io"
    assert settings.celery_broker_url.get_secret_value() == "redis://:pw@redis:6379/0"
    assert settings.zapi_rate_limit == 2.5
    assert settings.zapi_max_attempts == 4
    credentials = settings.zapi_credentials()
    assert credentials.instance_id == "inst"
    for secret in ("tok-secret", "ct-secret", ":pw@"):
        assert secret not in repr(settings)
        assert secret not in repr(credentials)


def test_dotenv_file_is_read(clean_env: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> None:
    with open(os.path.join(tmp_path, ".env"), "w") as env_file:
        env_file.write("ZAPI_INSTANCE_ID=from-dotenv\nZAPI_MAX_ATTEMPTS=9\n")
    settings = Settings()
    assert settings.zapi_instance_id == "from-dotenv"
    assert settings.zapi_max_attempts == 9


def test_missing_credentials_are_named(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ZAPI_INSTANCE_ID", "inst")
    with pytest.raises(ConfigurationError) as caught:
        Settings().zapi_credentials()
    assert "ZAPI_INSTANCE_TOKEN, ZAPI_CLIENT_TOKEN" in str(caught.value)
    assert "ZAPI_INSTANCE_ID" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ZAPI_RATE_LIMIT", "fast"),
        ("ZAPI_RATE_LIMIT", "0"),
        ("ZAPI_MAX_ATTEMPTS", "0"),
        ("ZAPI_BASE_URL", "not a url"),
        ("ZAPI_TIMEOUT", "-1"),
        ("CELERY_WORKER_LEASE", "1"),
    ],
)
def test_malformed_settings_are_named(clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=f"invalid configuration: {name}: "):
        load_settings()


@pytest.mark.parametrize(("lease", "visibility"), [(60, 900), (4, 300), (3, 4), (600, 30)])
def test_the_lease_is_renewed_three_times_over(lease: int, visibility: int) -> None:
    """The restore sweep renews a live worker's lease: at least three sweeps fit in one."""
    settings = Settings(
        celery_worker_lease=lease,
        celery_visibility_timeout=visibility,
        zapi_retry_backoff_max=1,
        zapi_rate_max_wait=0,
        zapi_timeout=1,
        zapi_connect_timeout=1,
    )
    options = celery_config(settings)["broker_transport_options"]
    assert options["fetch_lease"] == lease
    assert 3 * options["unacked_restore_interval"] <= lease


@pytest.mark.parametrize(
    ("settings", "rule"),
    [
        (
            {"celery_worker_lease": 10, "zapi_timeout": 15},
            "CELERY_WORKER_LEASE (10s) must be at least ZAPI_CONNECT_TIMEOUT + ZAPI_TIMEOUT (20s)",
        ),
        (
            {"celery_visibility_timeout": 2, "zapi_retry_backoff_max": 1},
            "must be at most half of CELERY_VISIBILITY_TIMEOUT (1s): a job still sleeping",
        ),
        (
            {"celery_visibility_timeout": 100, "zapi_retry_backoff_max": 300},
            "ZAPI_RETRY_BACKOFF_MAX must be at most half of CELERY_VISIBILITY_TIMEOUT (50s)",
        ),
    ],
    ids=["lease-shorter-than-a-request", "visibility-shorter-than-a-wait", "backoff-cap"],
)
def test_settings_that_cannot_work_together_are_refused_with_the_rule(
    clean_env: pytest.MonkeyPatch, settings: dict[str, int], rule: str
) -> None:
    for name, value in settings.items():
        clean_env.setenv(name.upper(), str(value))
    with pytest.raises(ConfigurationError, match="invalid configuration") as caught:
        load_settings()
    assert rule in str(caught.value)


def test_the_default_budget_rides_out_an_hour_of_outage() -> None:
    defaults = Settings()
    assert defaults.zapi_give_up_after >= 3600 + defaults.zapi_retry_backoff_max
    # Full jitter waits half the cap on average: the attempts outlast the time bound.
    assert defaults.zapi_max_attempts * defaults.zapi_retry_backoff_max / 2 > 3600


def test_secret_values_are_the_tokens_and_the_redis_passwords(
    clean_env: pytest.MonkeyPatch,
) -> None:
    settings = Settings(
        celery_broker_url="redis://:pw-broker@redis:6379/0",
        celery_result_backend="redis://user:pw-results@redis:6379/1",
        zapi_state_redis_url="redis://redis:6379/2",
        zapi_instance_token="tok-secret",
        zapi_client_token="ct-secret",
    )
    assert settings.secret_values() == ["tok-secret", "ct-secret", "pw-broker", "pw-results"]
    assert Settings().secret_values() == []  # nothing configured, nothing to hide


def start_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``celery -A worker worker`` as a user would; these tests expect it to refuse."""
    return subprocess.run(
        [*celery_command(), "-A", "worker", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_worker_refuses_to_start_without_credentials(clean_env: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZAPI_")}
    env["ZAPI_INSTANCE_ID"] = "inst"
    completed = start_worker(env)
    assert completed.returncode == 2
    assert "missing Z-API credentials: set ZAPI_INSTANCE_TOKEN, ZAPI_CLIENT_TOKEN" in (
        completed.stderr
    )


def test_worker_refuses_malformed_settings(clean_env: pytest.MonkeyPatch) -> None:
    env = {**os.environ, **CREDENTIALS, "ZAPI_MAX_ATTEMPTS": "lots"}
    completed = start_worker(env)
    assert completed.returncode == 2
    assert "invalid configuration: ZAPI_MAX_ATTEMPTS: Input should be a valid integer" in (
        completed.stderr
    )
    assert "Traceback" not in completed.stderr
    assert "tok-secret" not in completed.stderr + completed.stdout


def test_ordering_off_leaves_the_transport_without_lines(clean_env: pytest.MonkeyPatch) -> None:
    on = celery_config(Settings())["broker_transport_options"]
    assert on["arrival_index"] == "tasks.state.orders:arrival_index"
    clean_env.setenv("ZAPI_ORDERING", "off")
    off = celery_config(load_settings())["broker_transport_options"]
    assert "arrival_index" not in off


def test_one_result_backend_default_everywhere(clean_env: pytest.MonkeyPatch) -> None:
    """The worker, the producer and the shipped examples agree: results in database 1, so a
    producer following the README reads what default workers write."""
    from pathlib import Path

    from tasks.contract.producer import Producer

    worker_default = Settings().celery_result_backend.get_secret_value()
    producer = Producer()
    try:
        producer_default = producer.app.conf.result_backend
    finally:
        producer.close()
    assert worker_default == producer_default == "redis://127.0.0.1:6379/1"
    root = Path(__file__).resolve().parent.parent
    example = (root / ".env.example").read_text()
    assert "# CELERY_RESULT_BACKEND=redis://:password@redis:6379/1" in example
    assert "@${REDIS_HOST:-redis}:${REDIS_PORT:-6379}/1" in (
        (root / "docker-compose.yml").read_text()
    )


def test_every_secret_may_come_from_a_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``<VAR>_FILE`` (Docker and Kubernetes secrets): read, one trailing newline dropped, and
    redacted like the variable itself."""
    secrets = {
        "ZAPI_INSTANCE_TOKEN": "tok-from-file",
        "ZAPI_CLIENT_TOKEN": "ct-from-file",
        "ZAPI_WEBHOOK_SECRET": "hook-from-file",
        "CELERY_BROKER_URL": "redis://:broker-pw@redis:6379/0",
        "CELERY_RESULT_BACKEND": "redis://:backend-pw@redis:6379/1",
        "ZAPI_STATE_REDIS_URL": "redis://:state-pw@redis:6379/2",
    }
    for name, value in secrets.items():
        path = tmp_path / name.lower()
        path.write_text(value + "\n")
        clean_env.setenv(f"{name}_FILE", str(path))
    clean_env.setenv("ZAPI_INSTANCE_ID", "inst")
    settings = load_settings()
    read = {name: getattr(settings, name.lower()).get_secret_value() for name in secrets}
    assert read == secrets
    assert {"tok-from-file", "ct-from-file", "hook-from-file", "broker-pw"} <= set(
        settings.secret_values()
    )


def test_a_secret_file_and_its_variable_together_are_refused(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("from-file")
    clean_env.setenv("ZAPI_INSTANCE_TOKEN", "from-env")
    clean_env.setenv("ZAPI_INSTANCE_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(
        ConfigurationError, match="ZAPI_INSTANCE_TOKEN and ZAPI_INSTANCE_TOKEN_FILE"
    ):
        load_settings()


def test_an_unreadable_secret_file_is_named(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("ZAPI_CLIENT_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match=r"ZAPI_CLIENT_TOKEN_FILE: cannot read .*missing"):
        load_settings()


def test_settings_that_are_not_secrets_take_no_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "rate").write_text("99")
    clean_env.setenv("ZAPI_RATE_LIMIT_FILE", str(tmp_path / "rate"))
    assert load_settings().zapi_rate_limit == 5.0


def test_sentinel_passwords_are_secrets_too(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings(
        celery_broker_url="sentinel://:pw-master@h1:26379/0;sentinel://:pw-2@h2:26379/0",
        redis_sentinel_master="mymaster",
        redis_sentinel_password="pw-sentinels",
    )
    assert settings.secret_values() == ["pw-sentinels", "pw-master", "pw-2"]


@pytest.mark.parametrize(
    ("name", "url", "said"),
    [
        ("CELERY_BROKER_URL", "amqp://guest@rabbit//", "CELERY_BROKER_URL: amqp:// is not supp"),
        ("CELERY_BROKER_URL", "redis+socket:///tmp/redis.sock", "redis+socket:// is not supported"),
        ("ZAPI_STATE_REDIS_URL", "memory://", "ZAPI_STATE_REDIS_URL: memory:// is not supported"),
        ("CELERY_BROKER_URL", "sentinel://h1:26379", "URL needs REDIS_SENTINEL_MASTER"),
        ("CELERY_RESULT_BACKEND", "sentinel://h1", "URL needs REDIS_SENTINEL_MASTER"),
    ],
)
def test_a_broker_or_state_url_zapi_queue_cannot_keep_its_promises_on_is_refused(
    clean_env: pytest.MonkeyPatch, name: str, url: str, said: str
) -> None:
    clean_env.setenv(name, url)
    with pytest.raises(ConfigurationError, match=re.escape(said)):
        load_settings()


def test_a_malformed_sentinel_url_is_named_without_its_password(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("REDIS_SENTINEL_MASTER", "mymaster")
    clean_env.setenv("CELERY_BROKER_URL", "sentinel://:pw-SECRET@h1:26379/0;redis://h2:6379/0")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "CELERY_BROKER_URL: every ;-separated URL must be sentinel://, not redis://" in str(
        caught.value
    )
    assert "pw-SECRET" not in str(caught.value)


def test_the_worker_refuses_another_broker_with_one_line(clean_env: pytest.MonkeyPatch) -> None:
    completed = start_worker({**os.environ, **CREDENTIALS, "CELERY_BROKER_URL": "amqp://r//"})
    assert completed.returncode == 2
    assert completed.stderr.strip().startswith("zapi-queue: invalid configuration: CELERY_BROKER")
    assert "Traceback" not in completed.stderr

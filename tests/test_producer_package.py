"""The producer distribution (tasks/contract/pyproject.toml): built as a wheel, installed in a
fresh virtualenv beside an application that has its own ``config`` package and ``tasks`` module,
used end to end against a real worker.

The fresh venv borrows its dependencies (celery, pydantic) from the test environment through a
``.pth`` line, so the test needs no network; ``make producer-check`` (run by CI) installs the
same wheel with its declared dependencies from the package index instead.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from tests.bodies import unique_body
from tests.conftest import SECRETS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "tasks" / "contract"
PIP = (sys.executable, "-m", "pip")

# The shop's application: its own `config` and `tasks`, then our producer.
APP = textwrap.dedent(
    """
    import json, os, sys
    import config, tasks
    from zapi_queue_producer import TASK_NAMES, InvalidBodyError, Producer, __version__

    assert config.NAME == "shop config" and tasks.NAME == "shop tasks", "the shop's modules won"
    ours = sorted(m for m in sys.modules if m.split(".")[0] in {"worker", "tasks", "config"}
                  and m not in {"tasks", "config"})
    body, bad = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    producer = Producer()
    outcome = {"ours": ours, "version": __version__, "names": sorted(TASK_NAMES.values())}
    try:
        producer.enqueue_status_update(bad)
    except InvalidBodyError as exc:
        outcome["local_error"] = [type(exc).__module__, str(exc)]
    job = producer.enqueue_status_update(body)
    outcome["reply"] = producer.get_result(job, timeout=60)
    unchecked = producer.enqueue_status_update(bad, validate=False)
    try:
        producer.get_result(unchecked, timeout=60)
    except InvalidBodyError as exc:
        outcome["worker_error"] = [type(exc).__module__, str(exc)]
    producer.close()
    print(json.dumps(outcome))
    """
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(CONTRACT)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("zapi_queue_producer-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.startswith("zapi_queue_pr")}
    assert top_level == set(), top_level
    assert "zapi_queue_producer/schemas.py" in names
    assert "zapi_queue_producer/producer.py" in names
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))
    )
    requires = [line for line in metadata.decode().splitlines() if line.startswith("Requires-")]
    needed = [r for r in requires if "Dist" in r and "extra ==" not in r]
    assert sorted(re.split("[<>=]", r)[0] for r in needed) == [
        "Requires-Dist: celery[redis]",
        "Requires-Dist: pydantic",
    ]
    # The one extra: with it, a traced application's jobs carry its trace.
    extras = [r for r in requires if "extra ==" in r]
    assert [re.split("[<>=]", r)[0] for r in extras] == ["Requires-Dist: opentelemetry-api"]


def test_the_producer_version_is_the_worker_version() -> None:
    worker = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    producer = tomllib.loads((CONTRACT / "pyproject.toml").read_text())["project"]["version"]
    from tasks.contract import __version__

    assert worker == producer == __version__


@pytest.mark.usefixtures("worker")
def test_a_shop_with_its_own_config_and_tasks_enqueues_through_the_package(
    wheel: Path, tmp_path: Path, worker_env: dict[str, str]
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The wheel itself, installed by the test environment's pip into the fresh venv.
    subprocess.run(
        [*PIP, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Its dependencies, borrowed (the editable worker's finder .pth is not processed there).
    (Path(site) / "borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    app = tmp_path / "shop"
    (app / "config").mkdir(parents=True)
    (app / "config" / "__init__.py").write_text('NAME = "shop config"\n')
    (app / "tasks.py").write_text('NAME = "shop tasks"\n')
    bad = unique_body(orderStatus="delivered")
    env = {
        "PATH": "/usr/bin:/bin",
        "CELERY_BROKER_URL": worker_env["CELERY_BROKER_URL"],
        "CELERY_RESULT_BACKEND": worker_env["CELERY_RESULT_BACKEND"],
        "ZAPI_INSTANCE_ID": worker_env["ZAPI_INSTANCE_ID"],
    }
    completed = subprocess.run(
        [python, "-c", APP, json.dumps(unique_body()), json.dumps(bad)],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    outcome = json.loads(completed.stdout)
    assert outcome["ours"] == []
    assert outcome["names"] == [
        "zapi.order_payment_update",
        "zapi.order_status_update",
        "zapi.send_order",
    ]
    assert set(outcome["reply"]) == {"zaapId", "messageId", "id"}
    # Refused before it was queued, and, unchecked, by the worker: the package's own class.
    module, text = outcome["local_error"]
    assert module == "zapi_queue_producer.errors"
    assert "orderStatus: Input should be 'pending'" in text
    module, text = outcome["worker_error"]
    assert module == "zapi_queue_producer.errors"
    assert "orderStatus: Input should be 'pending'" in text
    assert not any(secret in completed.stdout + completed.stderr for secret in SECRETS)

"""The Node.js examples of docs/producing.md, run as written: celery-node enqueues through the
public contract (protocols 1 and 2) against a real worker, and ajv validates bodies with
schemas/*.json, agreeing with the pydantic models on the JSON Schema test corpus.

Their packages come from npm, which pip cannot bring: CI installs them (.ci/run); locally the
tests skip until ``npm install --prefix tests/node`` has been run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tasks.contract.endpoints import Endpoint
from tests.bodies import DOCS_SEND_ORDER_BODY, DOCS_STATUS_BODY, unique_body
from tests.conftest import SECRETS
from tests.test_json_schemas import accepted_by_model, corpus, exotic

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "tests" / "node"
NODE_MODULES = NODE_DIR / "node_modules"


def docs_script(name: str) -> str:
    """The ```js block of docs/producing.md whose first line is ``// <name>: ...``."""
    page = (ROOT / "docs" / "producing.md").read_text()
    blocks = re.findall(r"```js\n(.*?)```", page, re.DOTALL)
    (script,) = [str(block) for block in blocks if block.startswith(f"// {name}:")]
    return script


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    missing = (
        "node is not on PATH"
        if found is None
        else None
        if (NODE_MODULES / "celery-node").is_dir() and (NODE_MODULES / "ajv").is_dir()
        else "celery-node and ajv not installed: npm install --prefix tests/node"
    )
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI must run these tests: see .ci/run)")
        pytest.skip(missing)
    assert found is not None
    return found


def run_node(
    node: str, script: str, args: list[str], tmp_path: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.js"
    path.write_text(script)
    return subprocess.run(
        [node, str(path), *args],
        env={"PATH": os.environ["PATH"], "NODE_PATH": str(NODE_MODULES), **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def write_json(path: Path, value: object) -> str:
    path.write_text(json.dumps(value))
    return str(path)


@pytest.mark.e2e
@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("protocol", [2, 1])
def test_celery_node_delivers_and_reads_errors(
    node: str, protocol: int, tmp_path: Path, worker_env: dict[str, str]
) -> None:
    script = docs_script("enqueue.js")
    if protocol == 1:  # the docs' script, told to speak Celery's protocol 1
        script = script.replace("\nconst body", "\nclient.conf.TASK_PROTOCOL = 1;\nconst body", 1)
        assert "TASK_PROTOCOL = 1" in script
    env = {key: worker_env[key] for key in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")}

    good = run_node(
        node, script, [write_json(tmp_path / "good.json", unique_body())], tmp_path, env
    )
    assert good.returncode == 0, good.stderr
    assert re.fullmatch(r"delivered: \S+ \S+\n", good.stdout), good.stdout

    bad_body = unique_body(orderStatus="delivered")
    bad = run_node(node, script, [write_json(tmp_path / "bad.json", bad_body)], tmp_path, env)
    assert bad.returncode == 1
    assert bad.stderr.startswith("InvalidBodyError: invalid order-status-update body"), bad.stderr
    assert "orderStatus: Input should be 'pending'" in bad.stderr
    assert not any(secret in good.stdout + bad.stderr for secret in SECRETS)


def test_ajv_validates_with_the_schemas_as_the_readme_shows(node: str, tmp_path: Path) -> None:
    script = docs_script("validate.js")
    schema = str(ROOT / "schemas" / "order-status-update.json")
    good = run_node(
        node, script, [schema, write_json(tmp_path / "g.json", DOCS_STATUS_BODY)], tmp_path
    )
    assert (good.returncode, good.stdout) == (0, "valid\n"), good.stderr

    bad_body = {**DOCS_STATUS_BODY, "orderStatus": "delivered", "phone": "55449999XXXX"}
    bad = run_node(node, script, [schema, write_json(tmp_path / "b.json", bad_body)], tmp_path)
    assert bad.returncode == 1
    assert "/orderStatus: must be equal to one of the allowed values" in bad.stderr
    assert "/phone: must match pattern" in bad.stderr


# Every body of the corpus through ajv at once: ECMAScript regexes and ajv's type rules must
# agree with the models as Python's jsonschema does.
AJV_BATCH = """
const fs = require("fs");
const Ajv2020 = require("ajv/dist/2020");
const validate = new Ajv2020().compile(JSON.parse(fs.readFileSync(process.argv[2], "utf8")));
const bodies = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
console.log(JSON.stringify(bodies.map((body) => validate(body))));
"""


@pytest.mark.parametrize(
    ("endpoint", "form", "base"),
    [
        (Endpoint.ORDER_STATUS_UPDATE, "full", DOCS_STATUS_BODY),
        (Endpoint.ORDER_STATUS_UPDATE, "short", {"messageId": "3EB0C7", "orderStatus": "shipped"}),
        (
            Endpoint.ORDER_STATUS_UPDATE,
            "short",
            {"orderKey": "shop-1042", "orderStatus": "shipped"},
        ),
        (Endpoint.SEND_ORDER, "full", DOCS_SEND_ORDER_BODY),
    ],
    ids=["full", "short", "short-by-key", "send-order"],
)
def test_ajv_and_the_models_agree_on_the_corpus(
    node: str, endpoint: Endpoint, form: str, base: dict[str, Any], tmp_path: Path
) -> None:
    model = endpoint.schema if form == "full" else endpoint.short_schema
    assert model is not None
    bodies = [json.loads(json.dumps(body)) for body in [*corpus(base), *exotic(base)]]
    schema = ROOT / "schemas" / (f"{endpoint}.json" if form == "full" else f"{endpoint}.short.json")
    answer = run_node(
        node, AJV_BATCH, [str(schema), write_json(tmp_path / "c.json", bodies)], tmp_path
    )
    assert answer.returncode == 0, answer.stderr
    by_ajv = json.loads(answer.stdout)
    disagreements = [
        body
        for body, ok in zip(bodies, by_ajv, strict=True)
        if ok != accepted_by_model(model, body)
    ]
    assert disagreements == [], disagreements[:3]
    assert 10 < sum(by_ajv) < len(bodies) - 100

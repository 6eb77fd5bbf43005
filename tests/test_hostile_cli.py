"""Generated hostile input at the CLI door, against a real Redis: whatever the URL, id, phone,
file or password, the output never holds a secret, an unmasked phone or a traceback, and an
error is one line on stderr with a non-zero exit code.

Most runs go through click's in-process runner (tests/cli.py); a few are real processes (a
closed stdout, an unreadable URL, the health report with a raw-@ password)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.ports import free_port
from devtools.processes import stack_env
from devtools.redis_server import RedisServer
from devtools.zapi_sim import ZapiSimulator
from tasks.contract.schemas import normalized_phone
from tasks.state.deadletter import DeadLetter, DeadLetterStore
from tests.bodies import unique_body
from tests.cli import CLI, invoke_cli, run_cli
from tests.conftest import SECRETS
from tests.letters import dead_letter

pytestmark = pytest.mark.e2e

#: Databases of their own on the session's Redis: no worker consumes what these runs enqueue.
DB = 12

#: Printable or not, but no lone surrogates (argv cannot carry them as text) nor NUL.
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
PASSWORD_CHARS = st.characters(
    exclude_categories=["Cs", "Zs", "Zl", "Zp", "Cc"], exclude_characters="\x85"
)
PASSWORDS = st.text(PASSWORD_CHARS, min_size=1, max_size=30).map(lambda pw: "Pw@" + pw)
PHONES = st.from_regex(r"\+?55 ?\(?1[1-9]\)? ?9[0-9]{4}-?[0-9]{4}", fullmatch=True)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def env(redis_server: RedisServer, zapi_sim: ZapiSimulator) -> Iterator[dict[str, str]]:
    environment = stack_env(redis_server.url, zapi_sim, db=DB)
    environment["ZAPI_ORDER_WAIT"] = "1"
    for db in (DB, DB + 1):
        client = redis.Redis.from_url(f"{redis_server.url}/{db}")
        client.flushdb()
        client.close()
    yield environment
    for db in (DB, DB + 1):
        client = redis.Redis.from_url(f"{redis_server.url}/{db}")
        client.flushdb()
        client.close()


def check(
    code: int,
    stdout: str,
    stderr: str,
    *,
    secrets: tuple[str, ...] = (),
    phones: tuple[str, ...] = (),
    answers: tuple[int, ...] = (0, 1),
) -> None:
    """The door's invariants for one run; ``answers`` are the exit codes that are answers, not
    errors (``status`` answers 3 and 4 too)."""
    output = stdout + stderr
    assert "Traceback" not in output, output
    for secret in (*SECRETS, *secrets):
        assert secret not in output, f"a secret in {output!r}"
    for phone in phones:
        digits = normalized_phone(phone)
        if len(digits) < 8 or not digits.isdigit():
            continue  # not a phone: nothing to mask
        assert digits not in output, f"an unmasked phone in {output!r}"
    if code not in answers:
        assert stderr.count("\n") == 1, f"not one line: {stderr!r}"
        assert stderr.startswith("zapi-queue: "), stderr


def run(env: dict[str, str], *args: str, stdin: str | bytes | None = None, **kw: Any) -> Any:
    result = invoke_cli(env, *args, stdin=stdin)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)
    check(result.exit_code, result.stdout, result.stderr, **kw)
    return result


@given(job_id=ANY_TEXT)
def test_any_job_id_is_one_line_and_escaped(env: dict[str, str], job_id: str) -> None:
    for command in (("dead", "show"), ("dead", "replay"), ("dead", "purge", "--yes")):
        result = run(env, *command, "--", job_id)
        assert result.exit_code == 2
        assert "no dead letter with id" in result.stderr
    shown = run(env, "order", "show", "--", job_id)
    assert shown.exit_code == 1


@given(phone=PHONES | ANY_TEXT)
def test_any_phone_to_forget_is_masked_or_refused(env: dict[str, str], phone: str) -> None:
    result = run(env, "forget", "--dry-run", "--phone", phone, phones=(phone,))
    digits = normalized_phone(phone)
    if result.exit_code == 0:
        assert json.loads(run(env, "forget", "--json", "--phone", phone).stdout)["phone"]
        assert digits.isdigit()
    else:
        assert result.exit_code == 2
        assert "--phone must be 10 to 15 digits" in result.stderr


@given(body=JSON_VALUES, phone=PHONES, raw=st.booleans())
def test_any_body_file_is_refused_in_one_line_or_enqueued(
    env: dict[str, str], body: Any, phone: str, raw: bool
) -> None:
    if isinstance(body, dict):
        body = {**body, "phone": phone}
    text = json.dumps(body) if not raw else json.dumps(body)[:-1] + "\x00\ufeff"
    result = run(env, "enqueue", "status", stdin=text, phones=(phone,))
    assert result.exit_code in (1, 2)  # generated bodies are never complete
    assert result.stderr.count("\n") == 1, result.stderr


@settings(max_examples=10)
@given(depth=st.integers(1_000, 200_000), phone=PHONES)
def test_odd_json_files_deep_huge_or_not_utf8(env: dict[str, str], depth: int, phone: str) -> None:
    huge = '{"phone": "' + phone + '", "n": ' + "9" * depth + "}"
    for text in ("[" * depth, huge, "NaN"):
        result = run(env, "enqueue", "status", stdin=text, phones=(phone,))
        assert result.exit_code in (1, 2)
        result = run(env, "enqueue", "status", "--file", "-", stdin=text + "\n", phones=(phone,))
        assert result.exit_code == 1
    latin = ('{"phone": "' + phone + '", "message": "ol\xe1"}').encode("latin-1")
    assert run(env, "enqueue", "status", stdin=latin, phones=(phone,)).exit_code == 2


@given(password=PASSWORDS, scheme=st.sampled_from(["redis", "rediss", "redis:", "redis:/"]))
def test_a_password_with_at_signs_never_shows(
    env: dict[str, str], password: str, scheme: str
) -> None:
    url = f"{scheme}//:{password}@127.0.0.1:{free_port()}/0"
    broken = {**env, "CELERY_BROKER_URL": url, "ZAPI_STATE_REDIS_URL": url}
    for args in (("dead", "list"), ("forget", "--phone", "5511999990000"), ("health",)):
        # The tail after the password's first @: what a regex stopping there would show.
        result = run(broken, *args, secrets=(password, password[3:] + "@127.0.0.1"))
        assert result.exit_code in (1, 2)


#: What a URL can carry raw in its password: a / ? or # would end the host part.
URL_PASSWORDS = PASSWORDS.filter(lambda pw: not set(pw) & set("/?#"))


@settings(max_examples=5)
@given(password=URL_PASSWORDS)
def test_health_in_a_real_process_masks_a_raw_at_password(
    env: dict[str, str], password: str
) -> None:
    """The session's Redis answers with a wrong password (a raw @ in it): health is unhealthy,
    one report, the password nowhere."""
    url = env["CELERY_BROKER_URL"].replace("rpw-SECRET", password + "@x")
    shown = run_cli({**env, "CELERY_BROKER_URL": url}, "health", "--timeout", "0.2")
    tail = password[3:] + "@x-5e1b77aa03"  # after the first @ of the password given
    check(shown.returncode, shown.stdout, shown.stderr, secrets=(password, tail))
    # Unhealthy (a login refused), or a URL Python cannot read (a raw [ or ]): one line.
    assert shown.returncode in (1, 2)
    assert shown.returncode == 2 or "healthy: NO" in shown.stdout


def test_status_of_hostile_ids_in_real_processes(env: dict[str, str]) -> None:
    """The id is echoed as typed (the operator's own input), escaped: one line each."""
    for job_id in ("a\nb", "x:y:z", "' OR 1=1", "\x1b[2Jcleared", "é" * 500):
        shown = run_cli(env, "status", "--", job_id)
        check(shown.returncode, shown.stdout, shown.stderr, answers=(3,))
        assert "\x1b" not in shown.stdout
        assert shown.returncode == 3
        assert shown.stdout.count("\n") == 3, shown.stdout  # id, state, note


def test_bad_url_and_closed_pipe_in_real_processes(env: dict[str, str]) -> None:
    shown = run_cli({**env, "CELERY_BROKER_URL": "redis:/127.0.0.1:6379/0"}, "dead", "list")
    check(shown.returncode, shown.stdout, shown.stderr)
    assert shown.returncode == 2
    assert "CELERY_BROKER_URL must start with redis://" in shown.stderr
    for number in range(3):
        body = unique_body(phone=f"551199999{number:04d}")
        assert run(env, "enqueue", "status", stdin=json.dumps(body)).exit_code == 0
    # `| head -1`: the reader closes the pipe after one line; the command stops quietly.
    store = DeadLetterStore(redis.Redis.from_url(env["CELERY_BROKER_URL"]))
    for number in range(2000):
        store.add(letter_of(f"job-{number}", phone=f"5511988{number:06d}"))
    lister = subprocess.Popen(
        [CLI, "dead", "list", "--json", "--limit", "5000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert lister.stdout is not None
    assert lister.stderr is not None
    assert b'"job_id"' in lister.stdout.readline()
    lister.stdout.close()
    assert lister.wait(timeout=60) == 141
    assert lister.stderr.read() == b""
    lister.stderr.close()
    store.remove(f"job-{number}" for number in range(2000))


def letter_of(job_id: str, phone: str) -> DeadLetter:
    body = unique_body(phone=phone)
    return dead_letter(
        job_id, body=body, error_type="InvalidBodyError", error="x" * 200, attempts=0
    )

"""``zapi-queue webhooks configure`` and ``show`` against the fake Z-API on loopback: HTTPS
enforced before any request, one call per instance with notifySentByMe, Z-API's hidden errors
and timeouts reported per instance, and no secret in any output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.zapi_sim import Fault, OtherInstance, ZapiSimulator
from tests.cli import invoke_cli, run_cli

INSTANCE_ID, INSTANCE_TOKEN, CLIENT_TOKEN = "wh-inst-a", "wh-itok-SECRET-a1", "wh-ctok-SECRET-a2"
OTHER_ID, OTHER_TOKEN, OTHER_CLIENT_TOKEN = "wh-inst-b", "wh-itok-SECRET-b1", "wh-ctok-SECRET-b2"
HOOK_SECRET = "hook-SECRET-4f1c9e77"
URL = f"https://hooks.example.com/webhooks/zapi/{HOOK_SECRET}"
SECRETS = (INSTANCE_TOKEN, CLIENT_TOKEN, OTHER_TOKEN, OTHER_CLIENT_TOKEN, HOOK_SECRET)
ROUTE = "update-every-webhooks"


@pytest.fixture(scope="module")
def sim() -> Iterator[ZapiSimulator]:
    with ZapiSimulator(
        instance_id=INSTANCE_ID, instance_token=INSTANCE_TOKEN, client_token=CLIENT_TOKEN
    ) as simulator:
        simulator.other_instances[OTHER_ID] = OtherInstance(OTHER_TOKEN, OTHER_CLIENT_TOKEN)
        yield simulator


@pytest.fixture
def env(sim: ZapiSimulator) -> dict[str, str]:
    """A fleet of two instances on the fake: ``default`` and ``store-b``."""
    sim.reset()
    entry = {"instance_id": OTHER_ID, "instance_token": OTHER_TOKEN}
    return {
        **os.environ,
        "ZAPI_BASE_URL": sim.base_url,
        "ZAPI_INSTANCE_ID": INSTANCE_ID,
        "ZAPI_INSTANCE_TOKEN": INSTANCE_TOKEN,
        "ZAPI_CLIENT_TOKEN": CLIENT_TOKEN,
        "ZAPI_INSTANCES": json.dumps({"store-b": entry | {"client_token": OTHER_CLIENT_TOKEN}}),
        "ZAPI_TIMEOUT": "0.5",
        "ZAPI_CONNECT_TIMEOUT": "0.5",
        "ZAPI_WEBHOOK_SECRET": HOOK_SECRET,
    }


def run(env: dict[str, str], *args: str, code: int | None = 0) -> Any:
    """The command in-process (click's runner): its exit code checked (unless ``code`` is
    None), no traceback and no secret shown."""
    result = invoke_cli(env, *args)
    output = result.stdout + result.stderr
    assert code is None or result.exit_code == code, output
    assert "Traceback" not in output
    for secret in SECRETS:
        assert secret not in output, f"a secret in {output!r}"
    return result


def calls(sim: ZapiSimulator) -> list[tuple[str, Any]]:
    """The update-every-webhooks requests the fake received: (method, body), in order."""
    return [(r.method, r.json) for r in sim.requests() if r.path.endswith("/" + ROUTE)]


def test_configure_sets_every_instance_once_with_notify_sent_by_me(
    sim: ZapiSimulator, env: dict[str, str]
) -> None:
    completed = run_cli(env, "webhooks", "configure", "--url", URL)  # a real process
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert not any(secret in output for secret in SECRETS)
    shown = "https://hooks.example.com/webhooks/zapi/***"
    assert completed.stdout.splitlines() == [
        f"instance default ({INSTANCE_ID}): every webhook set to {shown}, notifySentByMe on",
        f"instance store-b: every webhook set to {shown}, notifySentByMe on",
    ]
    body = {"value": URL, "notifySentByMe": True}
    assert calls(sim) == [("PUT", body), ("PUT", body)]
    for instance_id in (INSTANCE_ID, OTHER_ID):
        assert sim.webhook_settings(instance_id) == {"value": URL, "notifySentByMe": True}
    [first, second] = [r for r in sim.requests() if r.path.endswith("/" + ROUTE)]
    assert first.headers["client-token"] == CLIENT_TOKEN
    assert second.headers["client-token"] == OTHER_CLIENT_TOKEN


def test_instance_limits_configure_to_one_alias(sim: ZapiSimulator, env: dict[str, str]) -> None:
    result = run(env, "webhooks", "configure", "--url", URL, "--instance", "store-b")
    assert result.stdout.startswith("instance store-b: every webhook set to")
    assert len(calls(sim)) == 1
    assert sim.webhook_settings(OTHER_ID) == {"value": URL, "notifySentByMe": True}
    assert sim.webhook_settings(INSTANCE_ID) is None
    unknown = run(env, "webhooks", "configure", "--url", URL, "--instance", "nope", code=2)
    assert "--instance nope: not a configured instance (configured: default, store-b)" in (
        unknown.stderr
    )
    assert len(calls(sim)) == 1


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (f"http://hooks.example.com/webhooks/zapi/{HOOK_SECRET}", "Z-API only calls HTTPS"),
        (f"HTTP://hooks.example.com/webhooks/zapi/{HOOK_SECRET}", "must be HTTPS"),
        (f"https://hooks.example.com/hooks/{HOOK_SECRET}", "/webhooks/zapi/<secret>"),
        ("https://hooks.example.com/webhooks/zapi/another-secret", "not ZAPI_WEBHOOK_SECRET"),
    ],
)
def test_a_url_z_api_or_the_receiver_would_refuse_is_refused_before_any_request(
    sim: ZapiSimulator, env: dict[str, str], url: str, said: str
) -> None:
    result = run(env, "webhooks", "configure", "--url", url, code=2)
    assert said in result.stderr
    assert result.stderr.count("\n") == 1
    assert sim.requests() == []


def test_without_the_receivers_secret_configured_any_secret_is_taken(
    sim: ZapiSimulator, env: dict[str, str]
) -> None:
    env = {**env, "ZAPI_WEBHOOK_SECRET": ""}
    run(env, "webhooks", "configure", "--url", URL)
    assert len(calls(sim)) == 2


def test_a_200_carrying_an_error_is_a_failure_of_that_instance_only(
    sim: ZapiSimulator, env: dict[str, str]
) -> None:
    refusal = {"error": f"webhook {URL} refused for token {OTHER_TOKEN}"}
    sim.set_outage(Fault(status=200, body=refusal), OTHER_ID)
    result = run(env, "webhooks", "configure", "--url", URL, code=1)
    assert result.stdout.startswith("instance default (")
    assert "instance store-b: FAILED: Z-API answered HTTP 200 without" in result.stderr
    assert "webhook https://hooks.example.com/webhooks/zapi/*** refused for token ***" in (
        result.stderr
    )
    assert "1 instance(s) not configured" in result.stderr
    assert sim.webhook_settings(OTHER_ID) is None


def test_http_errors_and_timeouts_are_reported_per_instance(
    sim: ZapiSimulator, env: dict[str, str]
) -> None:
    sim.set_outage(Fault(status=503, body={"error": "Service Unavailable"}), INSTANCE_ID)
    sim.set_outage(Fault(delay=1.5), OTHER_ID)
    result = run(env, "webhooks", "configure", "--url", URL, code=1)
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"instance default ({INSTANCE_ID}): FAILED: Z-API is unavailable: HTTP 503: "
        "Service Unavailable"
    )
    assert lines[1].startswith("instance store-b: FAILED: could not set the instance's webhooks")
    assert "ReadTimeout, timeout 0.5s" in lines[1]
    assert "Z-API may have applied it" in lines[1]


def test_a_wrong_client_token_echoed_by_z_api_is_masked(
    sim: ZapiSimulator, env: dict[str, str]
) -> None:
    sim.other_instances[OTHER_ID] = OtherInstance(OTHER_TOKEN, "another-client-token")
    try:
        result = run(env, "webhooks", "configure", "--url", URL, code=1)
    finally:
        sim.other_instances[OTHER_ID] = OtherInstance(OTHER_TOKEN, OTHER_CLIENT_TOKEN)
    assert "instance store-b: FAILED: Z-API refused the request: HTTP 403: Client-Token ***" in (
        result.stderr
    )


def test_show_reads_back_what_configure_set_masked(sim: ZapiSimulator, env: dict[str, str]) -> None:
    before = run(env, "webhooks", "show", "--instance", "store-b").stdout.splitlines()
    assert before[0] == "instance store-b: connected, notifySentByMe OFF"
    assert "  receivedCallbackUrl: not set" in before
    run(env, "webhooks", "configure", "--url", URL)
    sim.set_connected(False, OTHER_ID)
    shown = run(env, "webhooks", "show").stdout.splitlines()
    assert shown[0] == f"instance default ({INSTANCE_ID}): connected, notifySentByMe on"
    assert "  receivedCallbackUrl: https://hooks.example.com/webhooks/zapi/***" in shown
    assert "  deliveryCallbackUrl: https://hooks.example.com/webhooks/zapi/***" in shown
    assert "instance store-b: DISCONNECTED, notifySentByMe on" in shown
    assert sum(line.startswith("instance ") for line in shown) == 2


def test_show_marks_urls_that_do_not_reach_this_receiver(
    sim: ZapiSimulator, env: dict[str, str]
) -> None:
    run(env, "webhooks", "configure", "--url", URL, "--instance", "default")
    rotated = {**env, "ZAPI_WEBHOOK_SECRET": "the-receivers-new-secret"}
    shown = run(rotated, "webhooks", "show", "--instance", "default").stdout
    assert "its secret is not ZAPI_WEBHOOK_SECRET: the receiver answers 404" in shown
    assert "  connectedCallbackUrl: not set" not in shown


@given(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00")))
def test_any_url_is_refused_in_one_line_or_set_and_never_shown_with_its_secret(
    sim: ZapiSimulator, env: dict[str, str], prefix: str
) -> None:
    sim.reset()
    url = prefix + "/webhooks/zapi/" + HOOK_SECRET
    result = run(env, "webhooks", "configure", "--url", url, "--instance", "default", code=None)
    if result.exit_code == 2:
        assert result.stderr.startswith("zapi-queue: --url ")
        assert result.stderr.count("\n") == 1
        assert sim.requests() == []

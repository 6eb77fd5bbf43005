"""The URL given to Z-API: HTTPS and the receiver's route, never shown with its secret."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.webhook_url import masked_url, secret_of, url_problem

#: What a secret from ``secrets.token_urlsafe`` is made of.
SECRETS = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=60)
HOSTS = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){1,2}", fullmatch=True)
PREFIXES = st.sampled_from(["", "/zapi-queue", "/a/b"])


@given(HOSTS, PREFIXES, SECRETS)
def test_an_https_url_of_the_receivers_route_is_accepted_and_shown_masked(
    host: str, prefix: str, secret: str
) -> None:
    url = f"https://{host}{prefix}/webhooks/zapi/{secret}"
    assert url_problem(url) is None
    assert url_problem(url, secret) is None
    assert secret_of(url) == secret
    assert masked_url(url) == f"https://{host}{prefix}/webhooks/zapi/***"


@given(st.sampled_from(["http", "HTTP", "ftp", "ws", ""]), HOSTS, SECRETS)
def test_a_url_that_is_not_https_is_refused_naming_z_apis_rule(
    scheme: str, host: str, secret: str
) -> None:
    url = f"{scheme}://{host}/webhooks/zapi/{secret}" if scheme else f"{host}/webhooks/zapi/x"
    problem = url_problem(url, secret)
    assert problem is not None
    assert "HTTPS" in problem
    assert "Z-API only calls HTTPS" in problem


#: Secrets as long as real ones: a short one could be a word of the message itself.
LONG_SECRETS = st.text(string.ascii_letters + string.digits + "-_", min_size=12, max_size=60)


@given(HOSTS, LONG_SECRETS, LONG_SECRETS | st.just("same"))
def test_another_secret_than_the_receivers_is_refused(host: str, given_: str, secret: str) -> None:
    secret = given_ if secret == "same" else secret
    problem = url_problem(f"https://{host}/webhooks/zapi/{given_}", secret)
    assert (problem is None) == (given_ == secret)
    if problem is not None:
        assert given_ not in problem
        assert secret not in problem


@pytest.mark.parametrize(
    "url",
    [
        "https://h.example/",
        "https://h.example/webhooks/zapi/",
        "https://h.example/webhooks/zapi/s3cret/",  # the receiver has no such route
        "https://h.example/webhooks/zapi/s3cret/delivery",
        "https://h.example/hooks/s3cret",
    ],
)
def test_a_url_that_is_not_the_receivers_route_is_refused(url: str) -> None:
    assert "/webhooks/zapi/<secret>" in str(url_problem(url))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "without spaces"),
        ("https://h.example/webhooks/zapi/a b", "without spaces"),
        ("https://h.example/webhooks/zapi/a\n", "control characters"),
        ("https:///webhooks/zapi/s", "no host"),
        ("https://[::1/webhooks/zapi/s", "not a URL that can be read"),
    ],
)
def test_a_malformed_url_is_refused(url: str, problem: str) -> None:
    assert problem in str(url_problem(url))


def test_a_query_string_is_allowed_and_a_percent_encoded_secret_compared_decoded() -> None:
    assert url_problem("https://h.example/webhooks/zapi/a%2Bb?x=1", "a+b") is None


@given(
    st.text(string.ascii_letters + string.digits + "-_.~%", min_size=4, max_size=30),
    st.sampled_from(["/hooks/{}", "/{}/in", "/webhooks/zapi/{}", "/x?token={}", "/x#{}"]),
)
def test_no_shown_url_carries_a_token_of_another_system(token: str, shape: str) -> None:
    shown = masked_url("https://h.example" + shape.format(token))
    assert token not in shown
    assert shown.startswith("https://h.example/")


def test_a_password_and_the_configured_secrets_are_masked() -> None:
    shown = masked_url("https://user:pw-SECRET@h.example/webhooks/zapi/s", ["h.example"])
    assert shown == "https://***@***/webhooks/zapi/***"

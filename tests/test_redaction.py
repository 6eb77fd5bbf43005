"""Secrets are removed from text and from every log record, whatever logger emits it."""

from __future__ import annotations

import io
import logging

from tasks.contract.redaction import RedactingFilter, redact


def test_known_secrets_url_passwords_and_token_segments_are_masked() -> None:
    text = (
        "POST https://api.z-api.io/instances/ABC/token/TOK123/order-status-update "
        "Client-Token=ct-999 broker redis://:hunter2@redis:6379/0"
    )
    cleaned = redact(text, ["ct-999"])
    assert "TOK123" not in cleaned
    assert "ct-999" not in cleaned
    assert "hunter2" not in cleaned
    assert "/instances/ABC/token/***/order-status-update" in cleaned


def test_filter_scrubs_messages_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(["sekret-1"]))
    logger = logging.getLogger("test-redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("token %s in args", "sekret-1")
        error = RuntimeError("boom sekret-1")
        logger.error("failed for /token/abc/x", exc_info=(RuntimeError, error, None))
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "sekret-1" not in output
    assert "/token/abc/" not in output
    assert "token *** in args" in output
    assert "failed for /token/***/x" in output
    assert "RuntimeError: boom ***" in output


def test_a_password_with_a_raw_at_sign_is_masked_whole() -> None:
    # redis-py logs in with everything up to the LAST @ before the host.
    for url in ("redis://:s3cr@t@redis:6379/0", "redis://user:p@ss:w/rd@host/1"):
        cleaned = redact(f"broker {url} (reachable)")
        assert "s3cr" not in cleaned
        assert "t@redis" not in cleaned
        assert "p@ss" not in cleaned
        assert "w/rd" not in cleaned
    assert redact("redis://:s3cr@t@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact("redis://user:a@b@h:1/0") == "redis://user:***@h:1/0"
    assert redact("redis://user@h:1/0") == "redis://user@h:1/0"  # a user name alone stays

"""Passwords docker-compose.yml hands out: what they may hold, and placeholders refused.

Compose writes ``REDIS_PASSWORD`` into the Redis URLs it builds as it is: it cannot
percent-encode, so a ``/`` would end the host, a ``%41`` would read back as ``A``, a ``#`` would
cut the URL. Only RFC 3986's unreserved characters (letters, digits, ``- . _ ~``) are allowed,
which is what ``secrets.token_urlsafe`` prints. Old copies of .env.example carried
``admin:change-me`` and ``change-me``: a deployment still using one would run with a password
anyone can read in this repository, so the processes refuse them at start, naming the variable.
"""

from __future__ import annotations

import re

#: What REDIS_PASSWORD may hold.
URL_SAFE_PASSWORD = re.compile(r"[A-Za-z0-9._~-]+")
#: Compared case-insensitively, after stripping blanks.
PLACEHOLDERS = frozenset({"change-me", "changeme", "change_me", "password", "secret"})


def is_placeholder(value: str) -> bool:
    return value.strip().lower() in PLACEHOLDERS


def url_password_problem(password: str) -> str | None:
    """Why ``password`` cannot be Redis' compose-built URL password, never quoting it; None if
    it can."""
    if not URL_SAFE_PASSWORD.fullmatch(password):
        return (
            "may hold only letters, digits and - . _ ~ (docker-compose.yml writes it into the "
            "Redis URLs as it is), e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if is_placeholder(password):
        return "is a placeholder: set a password of your own"
    return None

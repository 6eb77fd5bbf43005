"""Every form POST carries a token bound to its user; without it, or with a wrong one: 403.

A browser sends the console's basic-auth login (or the proxy's cookie) with any request to it,
a request another site's page makes included: without a token, such a page could replay every
dead letter. The token is the HMAC of the user's name under a key drawn at random when the
process starts: another site cannot read it (the same-origin rule keeps our pages from it) nor
compute it (it lacks the key), one user's token is not another's, and there is nothing to
configure or to keep secret on disk. A restart draws a new key, so a form rendered before it is
refused once (403, "reload the page"); a fresh page carries a fresh token.

Forms are read here and only here (:func:`checked_form`), URL-encoded, at most ``MAX_FORM``
bytes: a handler cannot read a form without its token being checked first. (Starlette's own form
parser needs python-multipart, a dependency for file uploads the console does not take.)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request

#: The hidden field every form of the console carries.
FIELD = "csrf_token"
#: The largest form body read (a selection of a few thousand job ids fits).
MAX_FORM = 1024 * 1024

Form = dict[str, list[str]]


class CsrfTokens:
    """Tokens of one process: ``token(user)`` for the pages, ``valid`` for the POSTs."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def token(self, user: str) -> str:
        return hmac.new(self._key, user.encode(), hashlib.sha256).hexdigest()

    def valid(self, user: str, token: str) -> bool:
        return hmac.compare_digest(self.token(user).encode(), token.encode())


async def checked_form(request: Request) -> Form:
    """The request's form, once its CSRF token proved it came from one of our pages for this
    user; HTTPException 403 otherwise (the handler does nothing), 413 when it is too large."""
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        raise HTTPException(403, "a form of the console is required (CSRF token missing)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise HTTPException(413, "form too large")
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20_000)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(403, "unreadable form (CSRF token missing)") from None
    tokens: CsrfTokens = request.app.state.csrf
    given = form.get(FIELD, [""])
    if len(given) != 1 or not tokens.valid(request.state.user, given[0]):
        raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again")
    return form


def first(form: Form, name: str, default: str = "") -> str:
    """A form field's first value (a checkbox unticked, a field absent: ``default``)."""
    values = form.get(name)
    return values[0] if values else default

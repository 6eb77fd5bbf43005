"""Generated Redis passwords (``@``, ``:``, ``/``, ``%``, unicode) never survive ``redact``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tasks.contract.redaction import redact

#: Any printable non-space character a password may hold, the URL's own delimiters included.
PASSWORD_CHARS = st.characters(
    blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters="\x85"
)
PASSWORDS = st.text(PASSWORD_CHARS, min_size=1, max_size=40).map(lambda pw: "Pw" + pw)


@given(
    password=PASSWORDS,
    user=st.sampled_from(["", "default", "app_user"]),
    scheme=st.sampled_from(["redis", "rediss", "sentinel"]),
    around=st.sampled_from(["{}", "cannot reach Redis at {}: TimeoutError", '{{"broker": "{}"}}']),
)
def test_no_generated_password_survives(password: str, user: str, scheme: str, around: str) -> None:
    url = f"{scheme}://{user}:{password}@127.0.0.1:6379/0"
    cleaned = redact(around.format(url))
    assert password not in cleaned
    assert f"{scheme}://{user}:***@" in cleaned

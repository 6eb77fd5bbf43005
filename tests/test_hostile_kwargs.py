"""The call's shape and each kwarg's type and range (tasks/contract/job_kwargs.py), against
generated calls: a job's arguments either make a Call whose values are within the contract's
ranges, or fail with InvalidBodyError naming every offending kwarg; the transport's reading
of a message (arrival_of) never hands Redis a position the contract refuses."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.contract.errors import InvalidBodyError
from tasks.contract.job_kwargs import (
    MAX_SEQUENCE,
    OPTIONAL_KWARGS,
    Call,
    accepted_kwargs,
    check_kwargs,
)
from tasks.contract.ordering import arrival_of

TASK = "zapi.order_status_update"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
#: What the task takes: the common kwargs and its own (``supersede`` for the update tasks).
ACCEPTED = accepted_kwargs(TASK)
kwarg_names = st.sampled_from([*ACCEPTED, "body", "countdown", "Sequence", "", "x" * 50])
calls = st.tuples(
    st.lists(json_values, max_size=3), st.dictionaries(kwarg_names, json_values, max_size=5)
)


def _in_range(name: str, value: Any) -> bool:
    if value is None:
        return True
    if name == "sequence":
        return type(value) is int and 0 <= value < MAX_SEQUENCE
    if name in ("force", "supersede"):
        return isinstance(value, bool)
    if name == "idempotency_key":
        return isinstance(value, str) and 0 < len(value) <= 200
    return isinstance(value, str) and re.fullmatch(r"[a-z0-9_-]{1,40}", value) is not None


@given(calls)
def test_a_call_is_checked_whole_and_every_offence_named(
    call: tuple[list[Any], dict[str, Any]],
) -> None:
    args, kwargs = call
    try:
        checked = Call.of(TASK, args, dict(kwargs))
    except InvalidBodyError as exc:
        message = str(exc)
        for name, value in kwargs.items():
            if name in ACCEPTED and not _in_range(name, value):
                assert f"{name}: must be" in message
            if name not in (*ACCEPTED, "body"):
                assert "unknown kwargs" in message
        if len(args) + ("body" in kwargs) != 1:
            assert "positional argument" in message
        return
    assert len(args) + ("body" in kwargs) == 1
    assert set(kwargs) <= {*ACCEPTED, "body"}
    for name in ACCEPTED:
        assert _in_range(name, getattr(checked, name) if name != "force" else kwargs.get(name))
    assert checked.force is (kwargs.get("force") is True)


@given(st.dictionaries(st.sampled_from(OPTIONAL_KWARGS), json_values))
def test_the_producer_check_agrees_with_the_worker(kwargs: dict[str, Any]) -> None:
    try:
        check_kwargs(kwargs)
    except InvalidBodyError:
        with pytest.raises(InvalidBodyError):
            Call.of(TASK, [{}], kwargs)
    else:
        Call.of(TASK, [{}], kwargs)


@given(json_values, st.dictionaries(kwarg_names, json_values, max_size=4))
def test_the_transport_only_places_sequences_the_contract_accepts(
    body: Any, kwargs: dict[str, Any]
) -> None:
    raw = json.dumps([[{"orderRequestId": "ORD-1", "x": body}], kwargs, {}]).encode()
    message = {
        "body": base64.b64encode(raw).decode(),
        "properties": {"body_encoding": "base64"},
        "headers": {"task": TASK, "id": "job-1"},
    }
    found = arrival_of(message)
    assert found is not None
    if found.sequence is not None:
        assert type(found.sequence) is int
        assert 0 <= found.sequence < MAX_SEQUENCE


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"sequence": 10**400}, "sequence: must be an integer from 0 to 2^53-1"),
        ({"sequence": 2**53}, "sequence: must be an integer from 0 to 2^53-1"),
        ({"sequence": True}, "sequence: must be an integer"),
        ({"sequence": -1}, "sequence: must be an integer"),
        ({"sequence": 3.0}, "sequence: must be an integer"),
        ({"force": "yes"}, "force: must be true or false"),
        ({"force": 1}, "force: must be true or false"),
        ({"idempotency_key": ""}, "idempotency_key: must be a non-empty string"),
        ({"idempotency_key": "k" * 201}, "idempotency_key: must be a non-empty string"),
        ({"idempotency_key": 42}, "idempotency_key: must be a non-empty string"),
        ({"instance": 7}, "instance: must be an instance alias"),
        ({"instance": "Shop B"}, "instance: must be an instance alias"),
        ({"instance": "x" * 41}, "instance: must be an instance alias"),
        ({"retries": 3}, "got unknown kwargs: retries"),
    ],
)
def test_each_kwarg_has_a_type_and_a_range(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidBodyError, match=named.replace("^", r"\^")):
        Call.of(TASK, [{}], kwargs)


def test_every_offence_of_one_call_is_named_at_once() -> None:
    with pytest.raises(InvalidBodyError) as raised:
        Call.of(TASK, [{}, {}], {"force": "yes", "sequence": -1, "nope": 1})
    message = str(raised.value)
    for part in ("unknown kwargs: nope", "2 positional arguments", "force:", "sequence:"):
        assert part in message


def test_a_good_call_keeps_its_values() -> None:
    call = Call.of(
        TASK,
        [],
        {"body": {"a": 1}, "sequence": MAX_SEQUENCE - 1, "force": True, "instance": "shop-b"},
    )
    assert call == Call({"a": 1}, None, MAX_SEQUENCE - 1, True, "shop-b")
    assert Call.of(TASK, [{"a": 1}], {"force": False}).force is False

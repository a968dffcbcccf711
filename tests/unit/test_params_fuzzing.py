"""Fuzzing the parameter merger: any query, form or JSON body gives parameters or a 400, never a crash."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from switchboard.api.params import Params, read_params
from switchboard.errors import InvalidRequestError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_BODY = 4096

names = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12)
values = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)


def _read(method: str, query: str, content_type: str | None, body: bytes) -> Params:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode("latin-1")))
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": "/verification/v3/send",
        "query_string": query.encode(),
        "headers": headers,
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def run() -> Params:
        return await read_params(Request(scope, receive), max_body_bytes=MAX_BODY)

    return asyncio.run(run())


def _outcome(method: str, query: str, content_type: str | None, body: bytes) -> Params | None:
    """The parameters, or None for a readable 400; anything else fails the test."""
    refusal: InvalidRequestError | None = None
    try:
        return _read(method, query, content_type, body)
    except InvalidRequestError as refused:
        refusal = refused
    assert refusal.message
    return None


@FUZZ
@given(
    query=st.dictionaries(names, values, max_size=5),
    document=st.dictionaries(names, json_values, max_size=5) | json_values,
    content_type=st.sampled_from(
        [None, "application/json", "application/json; charset=utf-8", "text/plain", ""]
    ),
)
def test_any_json_body_gives_parameters_or_a_readable_refusal(
    query: dict[str, str], document: Any, content_type: str | None
) -> None:
    body = json.dumps(document).encode()
    params = _outcome("POST", urllib.parse.urlencode(query), content_type, body)
    if params is None:
        return
    for name, value in query.items():  # the query string wins, names in any case
        assert params.values[name.lower()] == value or any(
            other.lower() == name.lower() and other != name for other in query
        )
    assert all(key == key.lower() for key in params.values)


@FUZZ
@given(body=st.binary(max_size=MAX_BODY + 64), content_type=st.text(max_size=40))
def test_any_bytes_with_any_content_type_never_crash(body: bytes, content_type: str) -> None:
    if all(ord(c) < 256 for c in content_type):
        _outcome("POST", "countryCode=91", content_type, body)


@FUZZ
@given(form=st.dictionaries(names, values, max_size=6), query=st.dictionaries(names, values))
def test_form_fields_fill_only_what_the_query_left_out(
    form: dict[str, str], query: dict[str, str]
) -> None:
    body = urllib.parse.urlencode(form).encode()
    params = _outcome(
        "POST", urllib.parse.urlencode(query), "application/x-www-form-urlencoded", body
    )
    if params is None:
        return
    lowered_query = {name.lower() for name in query}
    for name, value in form.items():
        key = name.lower()
        if key not in lowered_query and sum(n.lower() == key for n in form) == 1:
            assert params.values[key] == value


@FUZZ
@given(
    body=st.binary(max_size=512),
    content_type=st.sampled_from(
        [
            "multipart/form-data; boundary=xyz",
            "multipart/form-data",
            "application/x-www-form-urlencoded",
        ]
    ),
)
def test_broken_forms_give_parameters_or_a_readable_refusal(body: bytes, content_type: str) -> None:
    framed = b"--xyz\r\n" + body + b"\r\n--xyz--\r\n" if "boundary" in content_type else body
    _outcome("POST", "", content_type, framed)


def test_a_body_over_the_limit_is_refused_not_read() -> None:
    assert _outcome("POST", "", "application/json", b" " * (MAX_BODY + 1)) is None

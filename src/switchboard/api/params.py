"""One view of a request's parameters: query string, form fields and JSON body, merged.

Real Message Central clients put parameters in the query string of a POST, in form fields, or in
a JSON body, and vary the case of names (`langId`, `langID`). Later sources fill gaps only: the
query string wins, then form fields, then JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from switchboard.errors import InvalidRequestError


@dataclass(slots=True)
class Params:
    values: dict[str, str] = field(default_factory=dict)  # keys lower-cased
    files: dict[str, UploadFile] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        value = self.values.get(name.lower())
        if value is None:
            return None
        value = value.strip()
        return value or None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise InvalidRequestError(f"{name} is required")
        return value

    def flag(self, name: str) -> bool:
        value = self.get(name)
        if value is None:
            return False
        if value.lower() in {"true", "1", "yes"}:
            return True
        if value.lower() in {"false", "0", "no"}:
            return False
        raise InvalidRequestError(f"{name} must be true or false")

    def _fill(self, name: str, value: object) -> None:
        if value is None:
            return
        key = name.lower()
        if key in self.values:
            return
        if isinstance(value, bool):
            self.values[key] = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            self.values[key] = str(value)
        elif isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
            self.values[key] = ",".join(str(v) for v in value)
        else:
            raise InvalidRequestError(f"{name} has an unsupported value")


async def read_params(
    request: Request, *, max_body_bytes: int, max_upload_bytes: int | None = None
) -> Params:
    params = Params()
    for name, value in request.query_params.multi_items():
        params._fill(name, value)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method not in {"POST", "PUT", "PATCH"}:
        return params
    if content_type in {"multipart/form-data", "application/x-www-form-urlencoded"}:
        await _read_form(request, params, max_body_bytes, max_upload_bytes or max_body_bytes)
        return params
    declared = request.headers.get("content-length", "")
    if declared in ("", "0") and "transfer-encoding" not in request.headers:
        return params  # no body (the usual POST with a query string): nothing to read
    if declared.isdigit() and int(declared) > max_body_bytes:
        raise InvalidRequestError(f"the request body is larger than {max_body_bytes} bytes")
    body = await request.body()
    if len(body) > max_body_bytes:
        raise InvalidRequestError(f"the request body is larger than {max_body_bytes} bytes")
    if not body.strip():
        return params  # clients send `Content-Type: application/json` with an empty body
    if content_type in {"application/json", ""} or content_type.endswith("+json"):
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            if content_type == "":
                return params
            raise InvalidRequestError("the JSON body is not valid JSON") from None
        if not isinstance(document, dict):
            raise InvalidRequestError("the JSON body must be an object")
        for name, value in document.items():
            params._fill(name, value)
    return params


async def _read_form(
    request: Request, params: Params, max_part_bytes: int, upload_cap: int
) -> None:
    declared = request.headers.get("content-length", "")
    # Refuse before Starlette spools the body to disk (a multipart file part has no cap).
    if declared.isdigit() and int(declared) > upload_cap + 64 * 1024:
        raise InvalidRequestError(
            f"the request is larger than the {upload_cap // (1024 * 1024)} MiB upload limit"
        )
    try:
        form = await request.form(max_part_size=max_part_bytes)
    except (MultiPartException, HTTPException) as exc:
        # Starlette raises HTTPException(400) inside an app and MultiPartException outside one;
        # either way the caller gets the envelope's 400 with the parser's reason.
        reason = exc.message if isinstance(exc, MultiPartException) else str(exc.detail)
        raise InvalidRequestError(f"the form data is malformed: {reason}") from None
    for name, item in form.multi_items():
        if isinstance(item, UploadFile):
            if item.size is not None and item.size > upload_cap:
                raise InvalidRequestError(
                    f"{name} is larger than the {upload_cap // (1024 * 1024)} MiB upload limit"
                )
            params.files.setdefault(name.lower(), item)
        else:
            params._fill(name, item)

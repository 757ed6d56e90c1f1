"""What crosses the wire besides Arrow data: typed errors and JSON values.

An error leaves the server as a Flight error whose `extra_info` names its `lake.errors` class,
and the remote client raises that same class with the same message. Values in action results
are JSON; datetimes and the catalog's dataclasses are tagged so the client rebuilds them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pyarrow.flight as fl

from batch.job import JobTimeout
from catalog import errors as _errors
from catalog.errors import AccessDenied, LakeError
from catalog.store import DatabaseInfo, TableInfo

# Every error class a client may receive, by name; anything else arrives as LakeError.
ERRORS: dict[str, type[LakeError]] = {
    **{n: getattr(_errors, n) for n in _errors.__all__},
    "JobTimeout": JobTimeout,
}
ACTING = "x-lakeward-user"  # header: the user= a remote client was given (checked, never trusted)
_DATACLASSES = {"TableInfo": TableInfo, "DatabaseInfo": DatabaseInfo}
UNAUTHENTICATED = (
    "unauthenticated: the server refused the credential (check the token or the password)"
)


def to_flight(e: LakeError) -> fl.FlightError:
    """A Flight error carrying `e`'s class and message."""
    name = type(e).__name__ if type(e).__name__ in ERRORS else "LakeError"
    info = json.dumps({"error": name, "message": str(e)}).encode()
    text = f"{name}: {e}"
    if isinstance(e, AccessDenied) and not isinstance(e, _errors.TableNotAccessible):
        return fl.FlightUnauthorizedError(text, extra_info=info)
    return fl.FlightServerError(text, extra_info=info)


def from_flight(e: fl.FlightError) -> LakeError:
    """The LakeError a Flight error stands for (transport failures become LakeError)."""
    if isinstance(e, fl.FlightUnauthenticatedError):
        return AccessDenied(UNAUTHENTICATED)
    raw = getattr(e, "extra_info", None) or b""
    try:
        info = json.loads(raw) if raw else None
    except ValueError:
        info = None
    if isinstance(info, dict) and isinstance(info.get("message"), str):
        cls = ERRORS.get(str(info.get("error")), LakeError)
        try:
            return cls(info["message"])
        except TypeError:
            return LakeError(info["message"])
    if isinstance(e, fl.FlightUnavailableError):
        return LakeError(
            f"the server is unavailable ({_first_line(e)}); check that it runs and retry"
        )
    if isinstance(e, fl.FlightTimedOutError):
        return LakeError(f"the server did not answer in time ({_first_line(e)}); retry")
    return LakeError(f"server error: {_first_line(e)}")


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__


def encode(value: Any) -> Any:
    """A JSON-able form of an action's result."""
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if dataclasses.is_dataclass(value) and type(value).__name__ in _DATACLASSES:
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$dc": type(value).__name__, "fields": fields}
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [encode(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def decode(value: Any) -> Any:
    """The inverse of `encode`."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$dt"}:
            return datetime.fromisoformat(value["$dt"])
        if set(value) == {"$dc", "fields"} and value["$dc"] in _DATACLASSES:
            cls = _DATACLASSES[value["$dc"]]
            fields = {k: decode(v) for k, v in value["fields"].items()}
            if cls is TableInfo:
                fields["partition_by"] = tuple(fields.get("partition_by") or ())
            return cls(**fields)
        return {k: decode(v) for k, v in value.items()}
    return value


def dumps(value: Any) -> bytes:
    return json.dumps(encode(value)).encode()


def loads(data: bytes) -> Any:
    return decode(json.loads(data))

"""``skymap-scanner-reco/1``: the line-delimited JSON spoken with an external reco process (no I/O here).

One message is one JSON object on one line (UTF-8, ``\\n``-terminated) with ``protocol`` and
``type``; the scanner writes to the child's stdin and reads its stdout. The exchange
(``docs/reco-protocol.md`` has every field and an example)::

    scanner -> child   hello     {options}
    child -> scanner   hello     {reco, n_posvar, max_batch, options_accepted}    (or error)
    scanner -> child   prepare   {event, realtime_frames}
    child -> scanner   prepared  {}                                               (or error)
    scanner -> child   fit       {id, fits: [{nside, pixel, zenith, azimuth, posvar, seed}]}
    child -> scanner   result    {id, results: [{llh, E_in, E_tot, X, Y, Z, T} | {error}]}  (or error)
    scanner -> child   bye       {}

Each message is a frozen dataclass with ``to_dict``; :func:`decode_line` validates what a
child wrote (JSON only, never evaluated) and raises :class:`ProtocolError` on anything else.
NaN travels as ``null``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeGuard

PROTOCOL = "skymap-scanner-reco/1"
MAX_LINE_BYTES = 64 * 1024 * 1024  # a longer line from a child is garbage
RESULT_FIELDS = ("llh", "E_in", "E_tot", "X", "Y", "Z", "T")
MAX_ERROR_CHARS = 300


class ProtocolError(ValueError):
    """A line that is not a valid ``skymap-scanner-reco/1`` message of an expected type."""


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any, what: str) -> float:
    """A JSON number or null (NaN)."""
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ProtocolError(f"{what} is {str(v)[:40]!r}, not a number or null")
    return float(v)


def _json_float(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _short(text: str) -> str:
    return (text.splitlines() or [""])[0][:MAX_ERROR_CHARS]


@dataclass(frozen=True)
class Hello:
    """scanner -> child, first: the options given to the reco (strings), for the child to accept or refuse."""

    type: ClassVar[str] = "hello"
    options: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"options": dict(self.options)}


@dataclass(frozen=True)
class ChildHello:
    """child -> scanner: who it is and what it can do."""

    type: ClassVar[str] = "hello"
    reco: str
    n_posvar: int
    max_batch: int = 1
    options_accepted: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"reco": self.reco, "n_posvar": self.n_posvar, "max_batch": self.max_batch,
                "options_accepted": list(self.options_accepted)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChildHello:
        reco, n_posvar, max_batch = d.get("reco"), d.get("n_posvar"), d.get("max_batch", 1)
        accepted = d.get("options_accepted", [])
        if not isinstance(reco, str) or not reco or len(reco) > 100:
            raise ProtocolError("hello: 'reco' must be a name (1..100 characters)")
        if not _is_int(n_posvar) or not 1 <= n_posvar <= 64:
            raise ProtocolError("hello: 'n_posvar' must be an integer 1..64")
        if not _is_int(max_batch) or max_batch < 1:
            raise ProtocolError("hello: 'max_batch' must be a positive integer")
        if not isinstance(accepted, list) or not all(isinstance(a, str) for a in accepted):
            raise ProtocolError("hello: 'options_accepted' must be a list of option names")
        return cls(reco, n_posvar, max_batch, tuple(accepted))


@dataclass(frozen=True)
class Prepare:
    """scanner -> child: the event (``skymap-scanner-event/1``) and, for a realtime alert, its frames
    as (stop, native I3Frame bytes), what IceTray's ``I3Frame.load`` reads."""

    type: ClassVar[str] = "prepare"
    event: Mapping[str, Any]
    realtime_frames: tuple[tuple[str, bytes], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        from ..events.native import frames_to_list

        event = {k: v for k, v in self.event.items() if k != "realtime_frames"}
        if "online_fits" in event:  # unknown vertex fields are left out (strict JSON has no NaN)
            event["online_fits"] = {name: {k: v for k, v in fit.items() if not (isinstance(v, float) and
                                                                                not math.isfinite(v))}
                                    for name, fit in event["online_fits"].items()}
        return {"event": event, "realtime_frames": frames_to_list(self.realtime_frames)}


@dataclass(frozen=True)
class Prepared:
    """child -> scanner: ready to fit."""

    type: ClassVar[str] = "prepared"

    def to_dict(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class FitItem:
    """One fit: the direction (local, rad) held fixed, the position variation and the seed vertex
    (x, y, z m, t ns) from the parent pixel or None. ``nside``/``pixel`` name the pixel (None
    only when a caller fits a bare direction)."""

    zenith: float
    azimuth: float
    posvar: int
    seed: tuple[float, float, float, float] | None = None
    nside: int | None = None
    pixel: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"nside": self.nside, "pixel": self.pixel, "zenith": _json_float(self.zenith),
                "azimuth": _json_float(self.azimuth), "posvar": self.posvar,
                "seed": list(self.seed) if self.seed is not None else None}


@dataclass(frozen=True)
class Fit:
    """scanner -> child: a batch of fits (1 .. the child's ``max_batch``), answered by one :class:`Result`."""

    type: ClassVar[str] = "fit"
    id: int
    fits: tuple[FitItem, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "fits": [f.to_dict() for f in self.fits]}


@dataclass(frozen=True)
class FitOutcome:
    """One answer: the seven numbers (NaN allowed) or an error text."""

    values: tuple[float, ...] | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.values is None:
            return {"error": self.error or "error"}
        return {k: _json_float(v) for k, v in zip(RESULT_FIELDS, self.values, strict=True)}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> FitOutcome:
        if not isinstance(d, dict):
            raise ProtocolError(f"{where} is not an object")
        if "error" in d:
            if not isinstance(d["error"], str):
                raise ProtocolError(f"{where}: 'error' must be a string")
            return cls(None, _short(d["error"]) or "error")
        missing = [k for k in RESULT_FIELDS if k not in d]
        if missing:
            raise ProtocolError(f"{where} has no {', '.join(missing)} (and no 'error')")
        return cls(tuple(_number(d[k], f"{where}.{k}") for k in RESULT_FIELDS))


@dataclass(frozen=True)
class Result:
    """child -> scanner: the answers to fit request ``id``, in order."""

    type: ClassVar[str] = "result"
    id: int
    results: tuple[FitOutcome, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Result:
        rid, results = d.get("id"), d.get("results")
        if not _is_int(rid):
            raise ProtocolError("result: 'id' must be an integer")
        if not isinstance(results, list):
            raise ProtocolError("result: 'results' must be a list")
        return cls(rid, tuple(FitOutcome.from_dict(r, f"result {i}") for i, r in enumerate(results)))


@dataclass(frozen=True)
class Error:
    """child -> scanner, instead of the expected reply: the request failed (the child goes on)."""

    type: ClassVar[str] = "error"
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Error:
        msg = d.get("message")
        if not isinstance(msg, str):
            raise ProtocolError("error: 'message' must be a string")
        return cls(_short(msg) or "error")


@dataclass(frozen=True)
class Bye:
    """scanner -> child: exit now (status 0). End of input means the same."""

    type: ClassVar[str] = "bye"

    def to_dict(self) -> dict[str, Any]:
        return {}


Message = Hello | ChildHello | Prepare | Prepared | Fit | Result | Error | Bye
_FROM_CHILD: dict[str, Any] = {
    "hello": ChildHello.from_dict,
    "prepared": lambda d: Prepared(),
    "result": Result.from_dict,
    "error": Error.from_dict,
}


def encode(msg: Message) -> bytes:
    """One line (compact JSON + ``\\n``)."""
    doc = {"protocol": PROTOCOL, "type": msg.type, **msg.to_dict()}
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def _no_constants(name: str) -> Any:
    raise ProtocolError(f"{name} is not JSON (send null for NaN)")


def decode_line(line: bytes, expect: Sequence[str]) -> ChildHello | Prepared | Result | Error:
    """A child's line as a message of one of the ``expect`` types (``error`` is always allowed)."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"a line of {len(line)} bytes (at most {MAX_LINE_BYTES})")
    text = line.decode("utf-8", errors="replace").strip()
    try:
        doc = json.loads(text, parse_constant=_no_constants)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError(f"not JSON: {text[:80]!r}") from None
    if not isinstance(doc, dict):
        raise ProtocolError(f"not a JSON object: {text[:80]!r}")
    if "protocol" not in doc:
        raise ProtocolError(f"a message with no 'protocol' (the scanner speaks {PROTOCOL!r}): {text[:80]!r}")
    if doc.get("protocol") != PROTOCOL:
        raise ProtocolError(f"protocol {str(doc.get('protocol'))[:60]!r}, but the scanner speaks {PROTOCOL!r}")
    kind = doc.get("type")
    if kind not in expect and kind != "error":
        raise ProtocolError(f"a {str(kind)[:40]!r} message where {' or '.join(expect)} was expected")
    msg: ChildHello | Prepared | Result | Error = _FROM_CHILD[str(kind)](doc)
    return msg


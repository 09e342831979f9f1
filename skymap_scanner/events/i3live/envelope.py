"""The i3live message envelope: safe unpickling, layout detection, frame extraction (spec section 1).

Pickles are opened only with allow-listing unpicklers: the outer 2021a message
may hold plain builtins only; a frame pickle may name exactly
``icecube.icetray.I3Frame`` / ``icecube._icetray.I3Frame`` (mapped to an inert
class) and ``_codecs.encode``. Everything else is refused before it is looked up.
"""

from __future__ import annotations

import base64
import binascii
import io
import pickle
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .archive import DecodeError

MAX_FRAME_BYTES = 64 * 2**20  # a decompressed frame larger than this is refused (zip bombs)
STOP_NAMES = {"G": "Geometry", "C": "Calibration", "D": "DetectorStatus", "Q": "DAQ", "P": "Physics"}
EVENT_TYPES = (("hese", "HESE"), ("ehe", "EHE"), ("estres", "ESTRES"), ("gold", "GOLD"),
               ("bronze", "BRONZE"), ("neutrino", "neutrino"))


def _brief(e: BaseException) -> str:
    """An exception as one short line (pickle errors can span lines)."""
    return f"{type(e).__name__}: {' '.join(str(e).split())[:80]}"


class RefusedPickle(pickle.UnpicklingError):
    """A pickle names a class that is not on the allow-list."""


class _OuterUnpickler(pickle.Unpickler):
    """The 2021a message pickle: builtins only, so every global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise RefusedPickle(f"refused to load {module}.{name} from the message pickle")


class _InertFrame:
    """Stand-in for ``icecube.icetray.I3Frame``: it only records its pickled state."""

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedPickle(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


class _FrameUnpickler(pickle.Unpickler):
    """A frame pickle: ``I3Frame`` (inert) and ``_codecs.encode`` (latin-1 only); nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "I3Frame" and module in ("icecube.icetray", "icecube._icetray"):
            return _InertFrame
        if (module, name) == ("_codecs", "encode"):
            return _codecs_encode
        raise RefusedPickle(f"refused to load {module}.{name} from a frame pickle")


def load_message_pickle(raw: bytes) -> Any:
    """Unpickle a 2021a message (plain builtins only); raises :class:`DecodeError`."""
    try:
        return _OuterUnpickler(io.BytesIO(raw)).load()
    except RefusedPickle as e:
        raise DecodeError(str(e)) from None
    except RecursionError:
        raise DecodeError("the pickle nests too deeply") from None
    except MemoryError:
        raise DecodeError("the pickle asks for too much memory") from None
    except Exception as e:  # noqa: BLE001 - any failure of a hostile/garbled pickle is a bad file
        raise DecodeError(f"not a valid pickle ({_brief(e)})") from None


def _inflate(data: bytes) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, MAX_FRAME_BYTES)
    if d.unconsumed_tail:
        raise DecodeError(f"a frame inflates to more than {MAX_FRAME_BYTES} bytes")
    if not d.eof:
        raise DecodeError("truncated zlib stream")
    return out


def frame_payload(b64: Any) -> bytes:
    """base64 -> zlib -> frame pickle -> the native I3Frame bytes."""
    if isinstance(b64, bytes):
        try:
            b64 = b64.decode("ascii")
        except UnicodeDecodeError:
            raise DecodeError("the frame data is not base64 text") from None
    if not isinstance(b64, str):
        raise DecodeError(f"the frame data is a {type(b64).__name__}, not base64 text")
    try:
        packed = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("the frame data is not valid base64") from None
    try:
        pickled = _inflate(packed)
    except zlib.error as e:
        raise DecodeError(f"the frame data is not valid zlib ({_brief(e)})") from None
    try:
        obj = _FrameUnpickler(io.BytesIO(pickled), encoding="bytes").load()
    except RefusedPickle as e:
        raise DecodeError(str(e)) from None
    except RecursionError:
        raise DecodeError("the frame pickle nests too deeply") from None
    except Exception as e:  # noqa: BLE001 - a garbled pickle may fail in many ways
        raise DecodeError(f"not a valid frame pickle ({_brief(e)})") from None
    if not isinstance(obj, _InertFrame):
        raise DecodeError(f"the frame pickle holds a {type(obj).__name__}, not an I3Frame")
    state = obj.state
    if not (isinstance(state, tuple) and len(state) == 2):
        raise DecodeError("the I3Frame pickle state is not (dict, payload)")
    payload = state[1]
    if isinstance(payload, str):  # unpickled with encoding="bytes" this only happens for 2023a-like text
        try:
            payload = payload.encode("latin-1")
        except UnicodeEncodeError:
            raise DecodeError("the I3Frame payload text is not latin-1") from None
    if not isinstance(payload, (bytes, bytearray)):
        raise DecodeError(f"the I3Frame payload is a {type(payload).__name__}, not bytes")
    return bytes(payload)


@dataclass(frozen=True)
class Envelope:
    """What the message says around its frames."""

    layout: str  # "old", "2021a", "2023a" (or another version string)
    frames: tuple[tuple[str, Any], ...]  # (stop, base64 text)
    data: Mapping[str, Any] = field(default_factory=dict)  # value.data when it is a dict
    message: Mapping[str, Any] = field(default_factory=dict)


def parse_envelope(doc: Any) -> Envelope:
    """Find the frames of an i3live message (old list-of-frames, 2021a or 2023a)."""
    if not isinstance(doc, dict):
        raise DecodeError(f"not an IceCube realtime message (a {type(doc).__name__}, not an object)")
    value = doc.get("value")
    if not isinstance(value, dict) or "data" not in value:
        raise DecodeError("not an IceCube realtime message (no 'value.data'), "
                          "nor a skymap-scanner-event/1 document (no 'format')")
    data = value["data"]
    version = value.get("version")
    if isinstance(data, list):
        layout, frames_raw, meta = "old", data, {}
    elif isinstance(data, dict):
        if "frames" not in data:
            raise DecodeError("the realtime message has no 'value.data.frames'")
        layout = str(version) if version is not None else "unversioned"
        frames_raw, meta = data["frames"], data
    else:
        raise DecodeError(f"'value.data' is a {type(data).__name__}, expected a list or an object")
    if not isinstance(frames_raw, list):
        raise DecodeError("the message's frames are not a list")
    frames = []
    for n, item in enumerate(frames_raw):
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
            raise DecodeError(f"frame entry {n} is not a [stop, data] pair")
        stop = item[0]
        if stop not in STOP_NAMES:
            raise DecodeError(f"frame entry {n} has an unknown stop {stop[:10]!r}")
        frames.append((stop, item[1]))
    return Envelope(layout=layout, frames=tuple(frames), data=meta, message=doc)


def event_type(message: Mapping[str, Any], data: Mapping[str, Any], followup: Mapping[str, Any] | None = None,
               ) -> str:
    """The alert stream: HESE, EHE, ESTRES, GOLD, BRONZE or neutrino (track alerts); "unknown" if unmarked.

    Looked for, in order, as keys of the alert content (``value.data`` or the P
    frame's ``AlertShortFollowupMsg``), in ``value.streams``, then in ``varname``
    and ``value.zmqnotify.topics`` (old HESE messages say ``heseEvent...``).
    """
    raw_value = message.get("value")
    value: Mapping[str, Any] = raw_value if isinstance(raw_value, dict) else {}
    key_sets: list[list[str]] = []
    for content in (data, followup or {}):
        key_sets.append([str(k).lower() for k in content])
    streams = value.get("streams")
    if isinstance(streams, list):
        key_sets.append([str(s).lower() for s in streams])
    for keys in key_sets:
        for marker, name in EVENT_TYPES:
            if marker in keys:
                return name
    names: list[str] = [str(message.get("varname", ""))]
    topics = value.get("zmqnotify", {}).get("topics") if isinstance(value.get("zmqnotify"), dict) else None
    names += [str(t) for t in topics] if isinstance(topics, list) else [str(topics or "")]
    for text in names:
        low = text.lower()
        for marker, name in EVENT_TYPES:
            if low.startswith(marker):
                return name
    return "unknown"

"""Event input: one entry point, :func:`load_event`, for every supported format.

Formats are detected from content, not only the file name:

* ``skymap-scanner-event/1`` JSON (the project's own, see :mod:`.native`);
* IceCube realtime alert messages (i3live JSON, old list-of-frames and 2023a
  layouts, and the 2021a pickle), decoded in pure Python by :mod:`.i3live`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import EventError
from . import native
from .model import Event, OnlineFit, Pulses

__all__ = ["Event", "OnlineFit", "Pulses", "load_event", "read_document", "event_from_json_dict", "write_event"]

PICKLE_MAGIC = (b"\x80",)  # protocol 2+ pickles start with PROTO (0x80)


def event_from_json_dict(d: Any, source: str) -> Event:
    """Build an event from an already-parsed JSON document of any supported layout."""
    if isinstance(d, dict) and "format" in d:
        return native.from_dict(d, source)
    from . import i3live  # lazy: the decoder is only loaded for realtime messages

    return i3live.event_from_message(d, source)


def read_document(path: str | os.PathLike[str]) -> tuple[Any, bool]:
    """Read an event file and parse it: (document, pickled). A pickle (2021a realtime message) is
    opened with the decoder's allow-listing unpickler, anything else as JSON; errors are :class:`EventError`."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise EventError(source, "no such file") from None
    except IsADirectoryError:
        raise EventError(source, "is a directory, not an event file") from None
    except OSError as e:
        raise EventError(source, f"cannot read: {e.strerror or e}") from None
    if not raw.strip():
        raise EventError(source, "the file is empty")
    if raw[:1] in PICKLE_MAGIC:
        from . import i3live

        return i3live.load_message_bytes(raw, source), True
    try:
        return json.loads(raw), False
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise EventError(source, f"neither JSON nor a pickled realtime message ({type(e).__name__})") from None


def load_event(path: str | os.PathLike[str]) -> Event:
    """Read, detect, decode and validate an event file; errors are :class:`EventError`."""
    source = str(path)
    doc, pickled = read_document(path)
    if pickled:  # a pickle is always a realtime message, never the native format
        from . import i3live

        return i3live.event_from_message(doc, source)
    return event_from_json_dict(doc, source)


def write_event(event: Event, path: str | os.PathLike[str]) -> Path:
    """Write ``event`` as ``skymap-scanner-event/1`` JSON, atomically."""
    from ..atomic import atomic_write_text

    return atomic_write_text(Path(path), json.dumps(native.to_dict(event)))

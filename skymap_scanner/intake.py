"""Intake: the one place where a message from the other side becomes a trusted message object.

Servers take replies through :func:`accept_result`, workers take work through :func:`accept_work`.
Both decode and validate (:mod:`skymap_scanner.messages`) and check the scan id; anything refused raises
:class:`~skymap_scanner.errors.MessageError` (:class:`ForeignMessage` for a valid message of another
scan), which the caller counts and drops. A check of where a message comes from (a signature, say)
belongs here, before any work is done on the message.
"""

from __future__ import annotations

from .errors import MessageError
from .messages import ResultMessage, WorkMessage, decode_result, decode_work


class ForeignMessage(MessageError):
    """A valid message, but for another scan."""


def accept_work(raw: object, scan_id: str | None) -> WorkMessage:
    """A delivery as work of scan ``scan_id`` (None: of any scan)."""
    work = decode_work(raw)  # type: ignore[arg-type]  # decode_work refuses any other type itself
    if scan_id is not None and work.scan_id != scan_id:
        raise ForeignMessage(f"work for another scan ({work.scan_id[:64]})")
    return work


def accept_result(raw: object, scan_id: str) -> ResultMessage:
    """A reply as a result of scan ``scan_id``."""
    msg = decode_result(raw)  # type: ignore[arg-type]
    if msg.scan_id != scan_id:
        raise ForeignMessage(f"a reply for another scan ({msg.scan_id[:64]})")
    return msg

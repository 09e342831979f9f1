"""Intake: the one place where a message from the other side becomes a trusted message object.

Servers take replies through :func:`accept_result`, workers take work through :func:`accept_work`.
Both first check the signature (:mod:`skymap_scanner.signing`: unsigned, forged and, on the server,
replayed messages are refused before any other work is done on them), then decode and validate
(:mod:`skymap_scanner.messages`) and check the scan id; anything refused raises
:class:`~skymap_scanner.errors.MessageError` (:class:`ForeignMessage` for a valid message of another
scan), which the caller counts and drops (:class:`DropLog` logs it, rate-limited).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from .errors import MessageError
from .messages import (
    ResultMessage,
    ScanOverMessage,
    StartedMessage,
    WorkMessage,
    decode_delivery,
    decode_reply,
)
from .signing import ForgedMessage, ReplayedMessage, UnsignedMessage, Verifier

LOG_BURST = 10  # drops logged one by one (per kind) before the log switches to periodic summaries
LOG_EVERY_S = 60.0


class ForeignMessage(MessageError):
    """A valid message, but for another scan."""


def accept_work(raw: object, scan_id: str | None, verifier: Verifier) -> WorkMessage | ScanOverMessage:
    """A delivery as work (or the scan-over news) of scan ``scan_id`` (None: of any scan) signed with
    ``verifier``'s key."""
    work = decode_delivery(verifier.open(raw))
    if scan_id is not None and work.scan_id != scan_id:
        raise ForeignMessage(f"work for another scan ({work.scan_id[:64]})")
    return work


def accept_result(raw: object, scan_id: str, verifier: Verifier) -> ResultMessage | StartedMessage:
    """A reply (a result, or a worker's "started" signal) of scan ``scan_id`` signed with ``verifier``'s key."""
    msg = decode_reply(verifier.open(raw))
    if msg.scan_id != scan_id:
        raise ForeignMessage(f"a reply for another scan ({msg.scan_id[:64]})")
    return msg


def drop_kind(e: MessageError) -> str:
    """The manifest's name for why a message was dropped."""
    if isinstance(e, UnsignedMessage):
        return "unsigned"
    if isinstance(e, ForgedMessage):
        return "forged"
    if isinstance(e, ReplayedMessage):
        return "replayed"
    if isinstance(e, ForeignMessage):
        return "foreign"
    return "bad"


class DropLog:
    """Counts dropped messages by kind and logs them without flooding: the first ``LOG_BURST`` of each
    kind one by one, then one summary line per kind every ``LOG_EVERY_S`` s."""

    def __init__(self, logger: logging.Logger, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger, self.what, self.clock = logger, what, clock
        self.counts: Counter[str] = Counter()
        self._unlogged: Counter[str] = Counter()
        self._t_summary: dict[str, float] = {}

    def drop(self, e: MessageError) -> str:
        kind = drop_kind(e)
        self.counts[kind] += 1
        if self.counts[kind] <= LOG_BURST:
            self.logger.warning("dropped %s: %s", self.what, e)
            if self.counts[kind] == LOG_BURST:
                self._t_summary[kind] = self.clock()
            return kind
        self._unlogged[kind] += 1
        now = self.clock()
        if now - self._t_summary.get(kind, now) >= LOG_EVERY_S:
            self.logger.warning("dropped %d more %s %s (%d in all; last: %s)", self._unlogged[kind], kind, self.what,
                                self.counts[kind], e)
            self._unlogged[kind] = 0
            self._t_summary[kind] = now
        return kind

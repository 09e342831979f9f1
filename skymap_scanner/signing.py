"""Signed message envelopes: an HMAC-SHA256 with the scan's secret key over every work and result message.

The server makes a random key per scan (:func:`new_key`, kept in the checkpoint directory so that a
resumed scan keeps it, see :func:`scan_key`) and hands it to its clients in the client-startup JSON
(mode 600) or, embedded, to its worker processes. A message travels as::

    {"signed": "skymap-scanner-signed/1", "kind": "work" | "result", "body": "<the message's JSON>",
     "hmac": "<hex HMAC-SHA256 of kind NUL body>", "client": "<results: the sender's name, a hint>"}

The MAC covers the kind, so a work message cannot be passed off as a result. :class:`Verifier` refuses
what is unsigned or forged and, on the server, what it has seen before (a replay: a verified MAC
already taken). No I/O here besides the key file; the key is never logged (``repr`` hides it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, MessageError

ENVELOPE = "skymap-scanner-signed/1"
KEY_BYTES = 32
Kind = Literal["work", "result"]


class UnsignedMessage(MessageError):
    """Not in a signed envelope (or the envelope is malformed)."""


class ForgedMessage(MessageError):
    """A signed envelope whose MAC does not match the scan's key."""


class ReplayedMessage(MessageError):
    """A correctly signed message that was already taken once."""


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _mac(key: bytes, kind: str, body: bytes) -> str:
    return hmac.new(key, kind.encode() + b"\0" + body, hashlib.sha256).hexdigest()


def seal(payload: dict[str, Any], kind: Kind, key: bytes) -> dict[str, Any]:
    """``payload`` (a message's ``to_dict()``) in a signed envelope."""
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    env = {"signed": ENVELOPE, "kind": kind, "body": body, "hmac": _mac(key, kind, body.encode())}
    if kind == "result" and isinstance(payload.get("client"), str):
        env["client"] = payload["client"]  # unsigned hint for transports counting clients; never trusted
    return env


class Verifier:
    """Opens envelopes of one kind signed with one key; ``remember`` > 0 also refuses replays (the MACs of
    the last ``remember`` messages taken are kept)."""

    def __init__(self, key: bytes, kind: Kind, remember: int = 0) -> None:
        if len(key) < 16:
            raise ValueError("a signing key needs at least 16 bytes")
        self._key = key
        self.kind = kind
        self.remember = remember
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"Verifier(kind={self.kind!r}, key=<hidden>)"

    def open(self, raw: Any) -> str:
        """The verified body (JSON text) of envelope ``raw`` (bytes, str or an already-decoded dict)."""
        env = raw
        if isinstance(raw, (bytes, bytearray, str)):
            try:
                env = json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError) as e:
                raise MessageError(f"{self.kind} message: not JSON ({type(e).__name__})") from None
        if not isinstance(env, dict) or env.get("signed") != ENVELOPE:
            raise UnsignedMessage(f"an unsigned {self.kind} message")
        body, mac, kind = env.get("body"), env.get("hmac"), env.get("kind")
        if not isinstance(body, str) or not isinstance(mac, str) or kind != self.kind:
            raise UnsignedMessage(f"a malformed signed envelope (expected kind {self.kind!r})")
        if not hmac.compare_digest(mac, _mac(self._key, self.kind, body.encode())):
            raise ForgedMessage(f"a {self.kind} message with a wrong signature")
        if self.remember:
            if mac in self._seen:
                raise ReplayedMessage(f"a replayed {self.kind} message")
            self._seen[mac] = None
            if len(self._seen) > self.remember:
                self._seen.popitem(last=False)
        return body


def scan_key(cache_dir: Path | None, scan_id: str) -> bytes:
    """The scan's key: read from ``cache_dir`` when an earlier run of this scan left one there (a resume
    keeps talking to the same clients), else a new one (saved there, mode 600, when a cache dir is given)."""
    if cache_dir is None:
        return new_key()
    path = Path(cache_dir) / f"{scan_id}.key"
    try:
        key = bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        key = new_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex())
        return key
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the scan's key ({type(e).__name__})") from None
    if len(key) < 16:
        raise ConfigError(f"{path}: not a scan key")
    return key

"""``external``: a reco that is another program, spoken to over its stdin/stdout.

``--reco-algo external --reco-option command="PROGRAM ARGS"`` (or ``SKYSCAN_EXTERNAL_RECO``)
starts one long-lived child process per worker and talks ``skymap-scanner-reco/1``
(:mod:`._external_protocol`, ``docs/reco-protocol.md``) with it: a handshake, the event
once, then batches of fits. Any language works; an IceTray script runs unmodified in its
own environment.

Options used here: ``command``, ``fit_timeout_s``, ``startup_timeout_s``, ``max_restarts``,
``max_batch``; every other ``--reco-option`` goes to the child, which must accept it in its
handshake.

Faults: a child that exits, does not answer within ``fit_timeout_s`` per fit, writes a line
that is not a valid message or speaks another protocol version is killed; the fits of that
request fail (each a failed attempt, retried by the scan like any reco failure) and the next
request starts a new child, at most ``max_restarts`` times per worker (after that every fit
fails at once). The child's stderr goes to this module's log, line by line, with its name.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import select
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from ..events import native
from ..events.model import Event
from . import _external_protocol as proto
from .base import FitRequest, FitResult, Reco, Vertex

LOGGER = logging.getLogger(__name__)
STDERR_KEEP = 5  # last stderr lines quoted when a child dies


class ChildFault(RuntimeError):
    """The external reco process crashed, hung or broke the protocol (it is restarted)."""


class ExternalRecoError(RuntimeError):
    """The external reco reported a failure for a fit."""


class ChildProcess:
    """One running child: writes lines to its stdin, reads lines from its stdout with a deadline,
    and logs its stderr line by line (a daemon thread)."""

    def __init__(self, argv: Sequence[str], label: str) -> None:
        try:
            self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0, close_fds=True)
        except OSError as e:
            raise ChildFault(f"cannot start {argv[0]!r}: {e.strerror or e}") from None
        self.name = f"{label}[{self.proc.pid}]"
        self._out_fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self._in_fd = self.proc.stdin.fileno()  # type: ignore[union-attr]
        os.set_blocking(self._out_fd, False)
        os.set_blocking(self._in_fd, False)
        self._buf = bytearray()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_KEEP)
        self._err_thread = threading.Thread(target=self._pump_stderr, name=f"stderr {self.name}", daemon=True)
        self._err_thread.start()

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip()
            self.stderr_tail.append(line)
            LOGGER.info("%s: %s", self.name, line[:2000])

    def _died(self, what: str) -> ChildFault:
        try:
            code = self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            code = None
        self._err_thread.join(timeout=0.5)
        tail = f"; its stderr ends: {self.stderr_tail[-1][:200]!r}" if self.stderr_tail else ""
        how = f"exited with code {code}" if code is not None else "closed its output"
        return ChildFault(f"{self.name} {how} {what}{tail}")

    def send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildFault(f"{self.name} did not read its input in time")
            if not _ready(self._in_fd, select.POLLOUT, left):
                continue
            try:
                n = os.write(self._in_fd, view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise self._died("(writing a request)") from None
            view = view[n:]

    def read_line(self, deadline: float, waiting_for: str) -> bytes:
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[:end + 1]
                return line
            if len(self._buf) > proto.MAX_LINE_BYTES:
                raise ChildFault(f"{self.name} wrote a line longer than {proto.MAX_LINE_BYTES} bytes")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildFault(f"{self.name} did not answer {waiting_for} in time")
            if not _ready(self._out_fd, select.POLLIN, left):
                continue
            try:
                chunk = os.read(self._out_fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                raise self._died(f"(waiting for {waiting_for})")
            self._buf += chunk

    def request(self, msg: proto.Message, expect: str, timeout_s: float) -> Any:
        """Send ``msg`` and read the reply of type ``expect`` (or ``error``)."""
        deadline = time.monotonic() + timeout_s
        self.send(proto.encode(msg), deadline)
        line = self.read_line(deadline, f"the {msg.type} request ({timeout_s:g} s)")
        try:
            return proto.decode_line(line, (expect,))
        except proto.ProtocolError as e:
            raise ChildFault(f"{self.name} broke the protocol: {e}") from None

    def stop(self, grace_s: float = 2.0) -> None:
        """``bye``, then SIGKILL if it has not exited within ``grace_s``."""
        if self.proc.poll() is None:
            try:
                self.send(proto.encode(proto.Bye()), time.monotonic() + grace_s)
                self.proc.wait(timeout=grace_s)
            except (ChildFault, subprocess.TimeoutExpired, OSError):
                pass
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
            LOGGER.error("%s does not die", self.name)
        self._err_thread.join(timeout=1.0)
        for f in (self.proc.stdin, self.proc.stdout) + ((self.proc.stderr,) if not self._err_thread.is_alive() else ()):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass


def _ready(fd: int, event: int, timeout_s: float) -> bool:
    """Whether ``fd`` is ready for ``event`` (or has hung up / failed) within ``timeout_s``."""
    poller = select.poll()
    poller.register(fd, event)
    return bool(poller.poll(max(1, math.ceil(timeout_s * 1000))))


def _ensure_log_handler() -> None:
    """Embedded worker processes configure no logging: give this logger a plain stderr handler there,
    so a child's stderr is seen."""
    if not logging.getLogger().handlers and not LOGGER.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)


class ExternalReco(Reco):
    """A reco in another process (any language), over ``skymap-scanner-reco/1``."""

    name = "external"
    batched = True
    OPTIONS = {
        "command": (str, "", "the child's command line (split like a shell does, run without a shell); "
                             "default: $SKYSCAN_EXTERNAL_RECO"),
        "fit_timeout_s": (float, 60.0, "seconds allowed per fit (a request of n fits gets n times this)"),
        "startup_timeout_s": (float, 300.0, "seconds allowed for the handshake and for preparing the event"),
        "max_restarts": (int, 5, "child restarts per worker after faults; then every fit fails"),
        "max_batch": (int, 0, "at most this many fits per request (0: as many as the child accepts)"),
    }

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        given = dict(options or {})
        super().__init__({k: v for k, v in given.items() if k in self.OPTIONS})
        self.child_options = {k: str(v) for k, v in given.items() if k not in self.OPTIONS}
        for key in ("fit_timeout_s", "startup_timeout_s"):
            if not self.options[key] > 0:
                raise ConfigError(f"reco option {key} must be positive")
        if self.options["max_restarts"] < 0 or self.options["max_batch"] < 0:
            raise ConfigError("reco options max_restarts and max_batch must be >= 0")
        command = self.options["command"] or _env_command()
        if not command:
            raise ConfigError("reco 'external' needs a command: --reco-option command='PROGRAM ARGS' "
                              "or SKYSCAN_EXTERNAL_RECO")
        try:
            self.argv = shlex.split(command)
        except ValueError as e:
            raise ConfigError(f"reco option command={command!r}: {e}") from None
        if not self.argv:
            raise ConfigError("reco option command is empty")
        self.label = os.path.basename(self.argv[0])
        self.hello: proto.ChildHello | None = None
        self._child: ChildProcess | None = None
        self._prepare: proto.Prepare | None = None
        self._next_id = 0
        self.restarts = 0

    # -- the child's life -----------------------------------------------------------------------
    def _handshake(self) -> ChildProcess:
        child = ChildProcess(self.argv, self.label)
        try:
            reply = child.request(proto.Hello(self.child_options), "hello", self.options["startup_timeout_s"])
            if isinstance(reply, proto.Error):
                raise ConfigError(f"external reco {child.name} refused the handshake: {reply.message}")
            unknown = sorted(set(self.child_options) - set(reply.options_accepted))
            if unknown:
                raise ConfigError(f"external reco {reply.reco!r} does not accept option(s) {', '.join(unknown)} "
                                  f"(it accepts: {', '.join(reply.options_accepted) or 'none'})")
            if self.hello is not None and reply.n_posvar != self.hello.n_posvar:
                raise ChildFault(f"{child.name} now says n_posvar {reply.n_posvar}, before {self.hello.n_posvar}")
        except BaseException:
            child.kill()
            raise
        child.name = f"{reply.reco}[{child.proc.pid}]"
        self.hello = reply
        return child

    def _launch(self) -> None:
        """A new child, through the handshake and ``prepare``."""
        assert self._prepare is not None
        child = self._handshake()
        try:
            reply = child.request(self._prepare, "prepared", self.options["startup_timeout_s"])
            if isinstance(reply, proto.Error):
                raise ChildFault(f"{child.name} could not prepare the event: {reply.message}")
        except BaseException:
            child.kill()
            raise
        LOGGER.debug("%s ready (n_posvar %d, max_batch %d)", child.name, self.hello.n_posvar,  # type: ignore[union-attr]
                     self.hello.max_batch)  # type: ignore[union-attr]
        self._child = child

    def close(self) -> None:
        """Stop the child (``bye``, then SIGKILL)."""
        if self._child is not None:
            self._child.stop()
            self._child = None

    def __del__(self) -> None:
        child = getattr(self, "_child", None)
        if child is not None:
            child.kill()

    # -- the Reco interface ---------------------------------------------------------------------
    @property
    def n_posvar(self) -> int:
        if self.hello is None:  # the server asks before any event: a handshake-only child
            try:
                self._handshake().stop()
            except ChildFault as e:
                raise ConfigError(f"external reco {self.label}: handshake failed: {e}") from None
        assert self.hello is not None
        return self.hello.n_posvar

    def prepare(self, event: Event) -> proto.Prepare:
        _ensure_log_handler()
        self.close()
        self._prepare = proto.Prepare(native.to_dict(event), event.realtime_frames)
        try:
            self._launch()
        except ChildFault as e:
            raise ConfigError(f"external reco {self.label}: {e}") from None
        return self._prepare

    def fit(self, prepared: Any, zenith_rad: float, azimuth_rad: float, posvar: int,
            seed: Vertex | None) -> FitResult:
        (out,) = self.fit_batch(prepared, [FitRequest(zenith_rad, azimuth_rad, posvar, seed)])
        if isinstance(out, Exception):
            raise out
        return out

    def fit_batch(self, prepared: Any, requests: Sequence[FitRequest]) -> list[FitResult | Exception]:
        if prepared is not self._prepare or self._prepare is None:
            raise RuntimeError("external reco: fit before prepare")
        size = self.hello.max_batch if self.hello else 1
        if self.options["max_batch"]:
            size = min(size, self.options["max_batch"])
        out: list[FitResult | Exception] = []
        for i in range(0, len(requests), size):
            out += self._fit_chunk(requests[i:i + size])
        return out

    def _fit_chunk(self, chunk: Sequence[FitRequest]) -> list[FitResult | Exception]:
        n = len(chunk)
        if self._child is None:
            if self.restarts >= self.options["max_restarts"]:
                return [ChildFault(f"external reco {self.label} gave up after {self.restarts} restarts")] * n
            self.restarts += 1
            LOGGER.warning("starting external reco %s again (restart %d of at most %d)", self.label,
                           self.restarts, self.options["max_restarts"])
            try:
                self._launch()
            except (ChildFault, ConfigError) as e:
                LOGGER.warning("restarting external reco %s failed: %s", self.label, e)
                return [ChildFault(f"restart failed: {e}")] * n
        child = self._child
        assert child is not None
        self._next_id += 1
        request = proto.Fit(self._next_id, tuple(
            proto.FitItem(r.zenith_rad, r.azimuth_rad, r.posvar,
                          (r.seed.x_m, r.seed.y_m, r.seed.z_m, r.seed.t_ns) if r.seed is not None else None,
                          r.nside, r.pixel) for r in chunk))
        try:
            reply = child.request(request, "result", self.options["fit_timeout_s"] * n)
            if isinstance(reply, proto.Result) and (reply.id != request.id or len(reply.results) != n):
                raise ChildFault(f"{child.name} answered request {reply.id} with {len(reply.results)} results "
                                 f"(expected request {request.id}, {n} results)")
        except ChildFault as e:
            LOGGER.warning("%s; stopping it (the %d fits of this request count as failed)", e, n)
            child.kill()
            self._child = None
            return [e] * n
        if isinstance(reply, proto.Error):
            return [ExternalRecoError(f"{child.name}: {reply.message}")] * n
        return [FitResult(*r.values) if r.values is not None else ExternalRecoError(f"{child.name}: {r.error}")
                for r in reply.results]


def _env_command() -> str:
    from ..config import read_env_config

    return read_env_config().SKYSCAN_EXTERNAL_RECO


RECO = ExternalReco

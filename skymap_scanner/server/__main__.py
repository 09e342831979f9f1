"""``python -m skymap_scanner.server``: run one scan, embedded or over a broker.

With no ``SKYSCAN_BROKER_ADDRESS`` the scan runs embedded on this machine with
``--local-workers`` processes; with one, work goes out through the broker to
clients started with the client-startup JSON this command writes.

SIGTERM / SIGINT (and, with SkyDriver, the kill switch: the scan deleted there) stop the scan
gracefully: one log line, the checkpoint flushed, the results so far as ``*.partial.npz``, the clients
told that the scan is over, exit 143 / 130 (0 for the kill switch). However the scan ends, the clients
get a signed scan-over message and the client-startup JSON is marked over.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import SkyScanError
from ..pixels import DEFAULT_CONTOUR_BUDGET, DEFAULT_PROGRESSION

LOGGER = logging.getLogger("skymap_scanner.server")


def _reco_option(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def _threshold(text: str) -> float:
    try:
        t = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.1 <= t <= 1.0:
        raise argparse.ArgumentTypeError("must be within 0.1 .. 1.0")
    return t


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n


def _positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not x > 0:  # also refuses nan
        raise argparse.ArgumentTypeError("must be > 0")
    return x


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m skymap_scanner.server",
        description="Scan an event's direction over the sky (embedded by default; over a broker when "
                    "SKYSCAN_BROKER_ADDRESS is set).",
    )
    p.add_argument("--event-file", required=True, type=Path,
                   help="event: skymap-scanner-event/1 JSON, or an IceCube realtime message (.json / .pkl)")
    p.add_argument("--reco-algo", required=True, help="reco plugin name (e.g. dummy, pandel_mpe)")
    p.add_argument("--reco-option", action="append", type=_reco_option, default=[], metavar="NAME=VALUE",
                   help="reco option (repeatable), e.g. --reco-option sleep_s=0.01")
    p.add_argument("--nsides", nargs="+", default=DEFAULT_PROGRESSION.split(), metavar="NSIDE:N",
                   help=f"nside progression (default: {DEFAULT_PROGRESSION}); NSIDE:N refines N pixels of the "
                        "previous nside around the best fit; NSIDE:c or NSIDE:cB refines along the contour (at "
                        f"most B pixels of the previous nside, default {DEFAULT_CONTOUR_BUDGET})")
    p.add_argument("--contour-level", type=_positive_float, default=None, metavar="L",
                   help="2*Delta-llh level the contour steps (NSIDE:c) follow (default: the event's calibrated "
                        "90%% level when a calibration applies, else 11.3)")
    p.add_argument("--contour-margin", type=_positive_float, default=None, metavar="M",
                   help="2*Delta-llh margin above the level that is refined too (default 2.0)")
    p.add_argument("--predictive-scanning-threshold", type=_threshold, default=1.0, metavar="T",
                   help="start refining once this fraction of an nside is done (0.1..1.0, default 1.0)")
    p.add_argument("--output-dir", required=True, type=Path, help="where results and products go")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="checkpoint directory: results are persisted there and a restart resumes")
    p.add_argument("--local-workers", type=_positive_int, default=os.cpu_count() or 1,
                   help="worker processes in embedded mode (default: CPU count)")
    p.add_argument("--client-startup-json", type=Path, default=None,
                   help="broker mode: where to write the JSON clients start from")
    p.add_argument("--no-products", action="store_true", help="write only the result files, no sky-map products")
    p.add_argument("--pointed-at", metavar="NAME", default=None,
                   help="pointed scan: the first nside only on a disc around this online fit of the event "
                        "(e.g. SplineMPE, MPEFit)")
    p.add_argument("--pointed-radius-deg", type=float, default=3.5, metavar="R",
                   help="radius of the pointed scan's disc in deg (default 3.5)")
    p.add_argument("--calibration", default="auto", metavar="auto|none|FILE",
                   help="error-region calibration: auto = the one shipped for the reco (if it applies to its "
                        "options), none, or a calibration file (skymap-scanner-calibration/1)")
    p.add_argument("--version", action="version", version=f"skymap_scanner {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    made: list[Path] = []  # directories this run created: removed again if it fails while they are empty
    from ..scan import ScanStopped

    try:
        return _run(args, made)
    except ScanStopped as e:  # a second signal while stopping
        print(f"skymap_scanner.server: stopped ({e.reason})", file=sys.stderr)
        return e.exit_code
    except SkyScanError as e:
        from ..console import remove_empty_dirs

        _release_lock(args, made)
        remove_empty_dirs(made)
        print(f"skymap_scanner.server: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("skymap_scanner.server: interrupted; results collected so far are in the checkpoint "
              "(--cache-dir) if one was given", file=sys.stderr)
        return 130
    finally:
        _release_lock(args, [])


def _release_lock(args: argparse.Namespace, made: list[Path]) -> None:
    """Release the --cache-dir lock (an in-process caller may run the scan again). A cache dir that this
    failed run created and that holds only the lock and the scan's key is emptied, so it can be removed."""
    lock = getattr(args, "cache_lock", None)
    if lock is None:
        return
    args.cache_lock = None
    lock.close()
    cache = None if args.cache_dir is None else Path(args.cache_dir)
    if cache is not None and any(cache.resolve() == Path(m).resolve() for m in made):
        from ..dirlock import LOCK_NAME

        left = list(cache.iterdir())
        # only the lock, a scan key and instance id (made before any result was checkpointed): nothing worth keeping
        if all(f.name == LOCK_NAME or f.suffix in (".key", ".instance") for f in left):
            for f in left:
                f.unlink(missing_ok=True)


def _run(args: argparse.Namespace, made: list[Path]) -> int:
    from ..config import read_env_config, setup_logging
    from ..console import ProgressView, check_event, final_line, prepare_dirs
    from ..events import load_event
    from ..scan import ScanRunner, ScanSpec, write_manifest

    cfg = read_env_config()
    setup_logging(cfg)
    made += prepare_dirs(("--output-dir", args.output_dir), ("--cache-dir", args.cache_dir))
    if args.cache_dir is not None:
        from ..dirlock import lock_cache_dir

        args.cache_lock = lock_cache_dir(args.cache_dir)  # held until this process ends
    event = load_event(args.event_file)
    reco_options = dict(args.reco_option)
    if args.reco_algo == "external" and "command" not in reco_options and cfg.SKYSCAN_EXTERNAL_RECO:
        reco_options["command"] = cfg.SKYSCAN_EXTERNAL_RECO  # so the client-startup JSON carries it
    for warning in check_event(event):
        LOGGER.warning(warning)
    pointing = None
    if args.pointed_at is not None:
        from ..pointed import resolve_pointing

        pointing = resolve_pointing(event, args.pointed_at, args.pointed_radius_deg)
        LOGGER.info("pointed scan: the first nside on a %.2f deg disc around %s (RA %.2f deg, Dec %+.2f deg)",
                    pointing.radius_deg, pointing.name, pointing.ra_deg, pointing.dec_deg)
    spec = ScanSpec(
        event, args.reco_algo, reco_options, " ".join(args.nsides),
        args.predictive_scanning_threshold, max_attempts=cfg.SKYSCAN_MAX_ATTEMPTS,
        batch_size=cfg.SKYSCAN_BATCH_SIZE, lease_min_s=cfg.SKYSCAN_LEASE_MIN_SEC,
        progress_interval_s=cfg.SKYSCAN_PROGRESS_INTERVAL_SEC, result_interval_s=cfg.SKYSCAN_RESULT_INTERVAL_SEC,
        timeout_from_clients_s=cfg.SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS, timeout_no_fit_s=cfg.SKYSCAN_TIMEOUT_NO_FIT_SEC,
        max_pixel_reco_s=cfg.SKYSCAN_MAX_PIXEL_RECO_TIME,
        cache_dir=args.cache_dir, pointing=pointing, calibration_source=args.calibration,
        contour_level=args.contour_level, contour_margin=args.contour_margin,
    )
    from ..checkpoint import scan_instance_id

    # queues of this server start only (a resume with --cache-dir reuses the instance of the run before)
    spec.instance_id = scan_instance_id(args.cache_dir, spec.scan_id)
    LOGGER.info("event %s from %s: %d pulses on %d DOMs, %.1f PE", event.name, args.event_file,
                len(event.pulses), event.pulses.n_doms, event.pulses.qtot_pe)
    from ..transport.registry import TransportOptions, backend_name, make_server_transport

    backend = backend_name(cfg)
    transport = make_server_transport(cfg, spec, TransportOptions(args.local_workers, args.client_startup_json))
    if backend == "embedded":
        LOGGER.info("mode: embedded, %d local worker processes (no SKYSCAN_BROKER_ADDRESS set)", args.local_workers)
    else:
        from ..transport.mq import redact_address

        LOGGER.info("mode: broker (%s at %s); clients start from %s", backend,
                    redact_address(cfg.SKYSCAN_BROKER_ADDRESS), args.client_startup_json)

    doc = getattr(transport, "startup_doc", None)
    if isinstance(doc, dict):  # clients drop a scan-over left in the queues by an earlier run of this scan
        doc["server_run"] = spec.server_run

    reporter = _Reporter(cfg, spec, args.output_dir, ProgressView())
    runner = ScanRunner(spec, transport, on_manifest=reporter.manifest, on_partial_result=reporter.partial)
    from ..scan import ScanStopped
    from ..skydriver import make_kill_switch

    stopper = _Stopper(runner)
    kill_switch = make_kill_switch(cfg, spec, lambda reason: runner.request_stop(reason, 0))
    t0 = time.monotonic()
    ended = "failed"
    try:
        stopper.install()
        runner.resume()
        transport.start()
        if kill_switch is not None:
            kill_switch.start()
        result = runner.run()
        ended = "complete"
    except ScanStopped as stop:
        ended = f"stopped: {stop.reason}"
        reporter.view.close()
        runner.close()  # the checkpoint flushed to disk
        partial = _write_partial(reporter, runner, args.output_dir, quiet=True)
        # the one line a stop leaves
        LOGGER.warning("scan stopped (%s) after %.1f s: partial result %s, checkpoint %s; clients told the scan "
                       "is over; exit %d", stop.reason, time.monotonic() - t0, partial,
                       "flushed" if args.cache_dir is not None else "not kept (no --cache-dir)", stop.exit_code)
        return stop.exit_code
    except BaseException:
        # never lose collected results: write what we have as a partial result
        _write_partial(reporter, runner, args.output_dir)
        raise
    finally:
        stopper.uninstall()
        if kill_switch is not None:
            kill_switch.stop()
        reporter.view.close()
        runner.close()
        _end_scan(runner, transport, args.client_startup_json, ended)
    npz = result.write_npz(args.output_dir)
    js = result.write_json(args.output_dir)
    npz.with_name(result.filename(".npz", partial=True)).unlink(missing_ok=True)  # the final one replaces it
    manifest = runner.manifest()
    write_manifest(args.output_dir, manifest)
    LOGGER.info("result written: %s (and %s) after %.1f s", npz, js.name, time.monotonic() - t0)
    reporter.final(result, manifest)
    summary = None
    if not args.no_products:
        try:
            from ..products import make_products

            paths = make_products(result, args.output_dir, result_path=npz)
            LOGGER.info("products written: %s", ", ".join(sorted(p.name for p in paths.values())))
            summary = json.loads(paths["summary"].read_text())
            if (summary.get("pointed") or {}).get("region_touches_edge"):
                LOGGER.warning("the 90%% region reaches the edge of the pointed disc (%.2f deg around %s): "
                               "it may be larger; scan a larger disc or the full sky", args.pointed_radius_deg,
                               args.pointed_at)
        except Exception as e:  # a failure to plot never loses the result
            LOGGER.error("making the sky-map products failed (%s: %s); the result %s is intact",
                         type(e).__name__, e, npz)
    LOGGER.info(final_line(summary, result.best_radec_deg(), args.output_dir))
    return 0


def _write_partial(reporter: _Reporter, runner: Any, output_dir: Path, quiet: bool = False) -> str:
    """The results so far under the partial name (and the manifest); best effort on the way out."""
    from ..scan import write_manifest

    try:
        path = reporter.partial(runner.result(), quiet=quiet)
        write_manifest(output_dir, runner.manifest())
        return str(path)
    except Exception as e:  # pragma: no cover - best effort on the way out
        LOGGER.error("could not write the partial result: %s", e)
        return "(not written)"


def _end_scan(runner: Any, transport: Any, startup_json: Path | None, reason: str) -> None:
    """Tell the clients the scan is over (in-band, and in the client-startup JSON for those starting
    later), then close the transport. Never raises: the server must exit whatever the broker does."""
    try:
        runner.announce_scan_over(reason)
    except Exception as e:  # pragma: no cover - the transport is already broken
        LOGGER.warning("could not tell the clients the scan is over (%s)", type(e).__name__)
    if startup_json is not None and Path(startup_json).exists():
        try:
            from ..atomic import atomic_write_text

            doc = json.loads(Path(startup_json).read_text())
            doc["scan_over"] = {"reason": reason, "at_unix": time.time()}
            atomic_write_text(Path(startup_json), json.dumps(doc, indent=1), mode=0o600)
        except (OSError, ValueError) as e:
            LOGGER.warning("could not mark %s as over (%s)", startup_json, type(e).__name__)
    transport.close()


class _Stopper:
    """SIGTERM / SIGINT: a graceful stop. In the scan loop, the loop is asked to stop at its next turn;
    before it (start-up, resume) the stop is raised at once. A second signal of either kind stops at once."""

    CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.received = 0
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        for sig in self.CODES:
            self._old[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        from ..scan import ScanStopped

        self.received += 1
        reason = f"{signal.Signals(signum).name} received"
        if self.runner.running and self.received == 1:
            self.runner.request_stop(reason, self.CODES[signal.Signals(signum)])
        else:
            raise ScanStopped(reason, self.CODES[signal.Signals(signum)])


class _Reporter:
    """Writes the manifest and partial results locally (and to SkyDriver when configured)."""

    def __init__(self, cfg: object, spec: object, output_dir: Path, view: Any) -> None:
        from ..skydriver import make_skydriver_reporter

        self.output_dir = output_dir
        self.skydriver = make_skydriver_reporter(cfg, spec)
        self.view = view  # the progress bar on a terminal

    def manifest(self, manifest: dict) -> None:  # type: ignore[type-arg]
        from ..scan import write_manifest

        write_manifest(self.output_dir, manifest)
        self.view.update(manifest)
        if self.skydriver:
            self.skydriver.send_manifest(manifest)

    def partial(self, result: object, quiet: bool = False) -> Path:
        path: Path = result.write_npz(self.output_dir, partial=True)  # type: ignore[attr-defined]
        if not quiet:
            LOGGER.info("partial result written: %s", path.name)
        if self.skydriver:
            self.skydriver.send_result(result, final=False)
        return path

    def final(self, result: object, manifest: dict) -> None:  # type: ignore[type-arg]
        if self.skydriver:
            self.skydriver.send_manifest(manifest)
            self.skydriver.send_result(result, final=True)


if __name__ == "__main__":
    raise SystemExit(main())

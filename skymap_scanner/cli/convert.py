"""Convert any supported event file (i3live JSON/pickle, or native) to ``skymap-scanner-event/1`` JSON.

    python -m skymap_scanner.cli.convert EVENT OUT.json
"""

from __future__ import annotations

import argparse
import sys


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m skymap_scanner.cli.convert",
        description="Decode an event file (IceCube realtime alert .json/.pkl, or skymap-scanner-event/1) "
                    "and write it as skymap-scanner-event/1 JSON (pulses after IceCube's online cleaning).",
    )
    p.add_argument("event", help="input event file")
    p.add_argument("out", help="output .json path (written atomically, replaced if it exists)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from ..errors import SkyScanError
    from ..events import load_event, write_event

    try:
        event = load_event(args.event)
        path = write_event(event, args.out)
    except SkyScanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {event.name}, {len(event.pulses)} pulses on {event.pulses.n_doms} DOMs, "
          f"{len(event.online_fits)} online fits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

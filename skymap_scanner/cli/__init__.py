"""The ``skymap-scanner`` console script: one entry point, a sub-command per tool.

``skymap-scanner server ...`` is ``python -m skymap_scanner.server ...``, and so on;
with options and no command (``skymap-scanner --event-file ...``) it is the server;
each sub-command's module does the work (heavy imports happen there, so ``--help``
is fast). The command-line tools live in this package (``cli.convert``, ``cli.describe``,
``cli.simulate``); the server and client keep their ``python -m skymap_scanner.server`` /
``.client`` entry points, and ``skymap_scanner.utils.{convert,describe,simulate}`` still run.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "server": ("skymap_scanner.server.__main__", "run a scan (embedded, or over a broker)"),
    "client": ("skymap_scanner.client.__main__", "fit pixels for a server over a broker"),
    "convert": ("skymap_scanner.cli.convert", "convert an event file to skymap-scanner-event/1"),
    "describe": ("skymap_scanner.cli.describe", "describe an event file"),
    "simulate": ("skymap_scanner.cli.simulate", "simulate muon-track events"),
    "products": ("skymap_scanner.utils.products", "sky-map products from a result .npz"),
    "calibrate": ("skymap_scanner.cli.calibrate", "calibrate a reco's error regions on simulated tracks"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0].startswith("-") and args[0] not in ("-h", "--help"):
        args = ["server", *args]  # `skymap-scanner --event-file ...` is the server, with the same options
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
        print("usage: skymap-scanner COMMAND [options]\n\ncommands:\n" + "\n".join(lines))
        if args and args[0] not in ("-h", "--help"):
            print(f"\nskymap-scanner: error: unknown command {args[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

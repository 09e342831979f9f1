"""One server per checkpoint directory: an exclusive ``flock`` on ``DIR/.server.lock``, held for the
process's lifetime (the kernel releases it when the process ends, however it ends)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from .errors import ConfigError

LOCK_NAME = ".server.lock"


def lock_cache_dir(cache_dir: Path) -> IO[str]:
    """Lock ``cache_dir`` for this process; keep the returned file open as long as the lock is needed.
    Raises :class:`ConfigError` (one line) when another process holds it."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    f = open(cache_dir / LOCK_NAME, "a+")  # noqa: SIM115 - held open: the lock lives as long as the file
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip()[:40] or "?"
        f.close()
        raise ConfigError(f"another server (pid {holder}) is running a scan with --cache-dir {cache_dir}; "
                          "two servers on one checkpoint would take each other's replies") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f

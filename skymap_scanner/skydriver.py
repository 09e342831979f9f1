"""Optional reporting of progress and results to a SkyDriver-style REST service, and its kill switch.

Enabled by ``SKYSCAN_SKYDRIVER_ADDRESS``. Uses wipac-rest-tools' RestClient.
Intermediate updates are best effort (a failure is logged and the scan goes on);
the final result is retried several times.

Kill switch: :class:`KillSwitch` polls ``GET /scan/<id>/status`` every ``SKYSCAN_SKYDRIVER_POLL_SEC``;
when the answer says the scan is deleted (``"is_deleted": true``, or a ``"scan_state"`` naming a
deletion) the server stops as on SIGTERM, but exits 0 with the reason logged. A poll that fails, or an
answer without those fields, never stops a scan.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

LOGGER = logging.getLogger(__name__)


class SkyDriverReporter:
    """PATCHes the scan manifest and PUTs results to ``/scan/<id>/manifest`` and ``/scan/<id>/result``."""

    def __init__(self, address: str, token: str, scan_id: str, final_retries: int = 5,
                 retry_delay_s: float = 2.0) -> None:
        from rest_tools.client import RestClient

        self.rc = RestClient(address, token=token or None, timeout=30, retries=1)
        self.scan_id = scan_id
        self.final_retries = final_retries
        self.retry_delay_s = retry_delay_s

    def _call(self, method: str, path: str, body: dict[str, Any]) -> None:
        self.rc.request_seq(method, path, body)

    def send_manifest(self, manifest: dict[str, Any]) -> None:
        try:
            self._call("PATCH", f"/scan/{self.scan_id}/manifest", {"progress": manifest})
        except Exception as e:
            LOGGER.warning("SkyDriver manifest update failed (%s); the scan goes on", type(e).__name__)

    def send_result(self, result: Any, final: bool) -> None:
        body = {"skyscan_result": result.to_json_dict(), "is_final": final}
        tries = self.final_retries if final else 1
        for attempt in range(1, tries + 1):
            try:
                self._call("PUT", f"/scan/{self.scan_id}/result", body)
                return
            except Exception as e:
                LOGGER.warning("SkyDriver result upload %d/%d failed (%s)", attempt, tries, type(e).__name__)
                if attempt < tries:
                    time.sleep(self.retry_delay_s)
        if final:
            LOGGER.error("SkyDriver never accepted the final result; it is still on disk")


def says_deleted(status: Any) -> bool:
    """Whether a ``/scan/<id>/status`` answer says the scan was deleted."""
    if not isinstance(status, dict):
        return False
    if status.get("is_deleted") is True:
        return True
    state = status.get("scan_state")
    return isinstance(state, str) and "DELETED" in state.upper()


class KillSwitch(threading.Thread):
    """Polls SkyDriver's status of the scan; calls ``on_deleted(reason)`` once when it says deleted."""

    def __init__(self, address: str, token: str, scan_id: str, interval_s: float,
                 on_deleted: Callable[[str], None]) -> None:
        super().__init__(name="skydriver-kill-switch", daemon=True)
        from rest_tools.client import RestClient

        self.rc = RestClient(address, token=token or None, timeout=10, retries=0)
        self.scan_id, self.interval_s, self.on_deleted = scan_id, interval_s, on_deleted
        self.halt = threading.Event()
        self.polls = 0
        self._warned = False

    def poll(self) -> bool:
        """One poll; True if SkyDriver says the scan is deleted."""
        self.polls += 1
        try:
            status = self.rc.request_seq("GET", f"/scan/{self.scan_id}/status")
        except Exception as e:
            if not self._warned:  # once: a SkyDriver outage must not flood the log
                LOGGER.warning("SkyDriver status poll failed (%s); the scan goes on", type(e).__name__)
                self._warned = True
            return False
        return says_deleted(status)

    def run(self) -> None:
        while not self.halt.wait(self.interval_s):
            if self.poll():
                self.on_deleted(f"SkyDriver says scan {self.scan_id} is deleted (kill switch)")
                return

    def stop(self) -> None:
        self.halt.set()


def make_kill_switch(cfg: Any, spec: Any, on_deleted: Callable[[str], None]) -> KillSwitch | None:
    address = getattr(cfg, "SKYSCAN_SKYDRIVER_ADDRESS", "")
    if not address:
        return None
    return KillSwitch(address, cfg.SKYSCAN_SKYDRIVER_AUTH, cfg.SKYSCAN_SKYDRIVER_SCAN_ID or spec.scan_id,
                      cfg.SKYSCAN_SKYDRIVER_POLL_SEC, on_deleted)


def make_skydriver_reporter(cfg: Any, spec: Any) -> SkyDriverReporter | None:
    address = getattr(cfg, "SKYSCAN_SKYDRIVER_ADDRESS", "")
    if not address:
        return None
    return SkyDriverReporter(address, cfg.SKYSCAN_SKYDRIVER_AUTH, cfg.SKYSCAN_SKYDRIVER_SCAN_ID or spec.scan_id)

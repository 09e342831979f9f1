"""Optional reporting of progress and results to a SkyDriver-style REST service.

Enabled by ``SKYSCAN_SKYDRIVER_ADDRESS``. Uses wipac-rest-tools' RestClient.
Intermediate updates are best effort (a failure is logged and the scan goes on);
the final result is retried several times.
"""

from __future__ import annotations

import logging
import time
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


def make_skydriver_reporter(cfg: Any, spec: Any) -> SkyDriverReporter | None:
    address = getattr(cfg, "SKYSCAN_SKYDRIVER_ADDRESS", "")
    if not address:
        return None
    return SkyDriverReporter(address, cfg.SKYSCAN_SKYDRIVER_AUTH, cfg.SKYSCAN_SKYDRIVER_SCAN_ID or spec.scan_id)

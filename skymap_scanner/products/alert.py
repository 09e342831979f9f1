"""Drafts for the alert follow-up: ``gcn_notice.json`` and ``circular.txt`` (pure: from the summary).

Both are built from ``summary.json``'s dict, so their numbers are the summary's. Both are DRAFTS
for a person to check before anything is sent: the event letter (``A``), the stream and the
wording are not known to the scanner.

- ``gcn_notice.json`` follows the field names of GCN's unified JSON schema (core ``Alert``,
  ``Reporter``, ``Event``, ``Localization``): mission, alert and trigger time, ``ra``/``dec``,
  ``ra_dec_error`` (radius of the circle with the headline 90% region's area),
  ``containment_probability``, ``systematic_included`` and the FITS file's name.
- ``circular.txt`` is laid out as IceCube's track-alert circulars read: subject with the event name
  ``IceCube-YYMMDDA``, date and time, RA/Dec with asymmetric 90% errors, the 90% area, the reco.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import Any

from skymap_scanner.products.regions import HEADLINE

NOTICE_FORMAT = "skymap-scanner-gcn-notice-draft/1"
DRAFT_NOTE = "DRAFT made by skymap_scanner: a person must check every value before it is sent"


def event_name(time_utc: str | None, letter: str = "A") -> str:
    """``IceCube-YYMMDD<letter>`` from the event's UTC date (the letter counts alerts of that day)."""
    if not time_utc:
        return "IceCube-??????" + letter
    return "IceCube-" + time_utc[2:4] + time_utc[5:7] + time_utc[8:10] + letter


def headline(summary: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The summary's (50%, 90%) headline region entries."""
    by_name = {r["name"]: r for r in summary["regions"]}
    names = summary.get("headline_regions", {"50": HEADLINE.r50, "90": HEADLINE.r90})
    return by_name[names["50"]], by_name[names["90"]]


def _iso_z(iso: str | None) -> str | None:
    return None if iso is None else iso + "Z"


def gcn_notice(summary: Mapping[str, Any], fits_name: str, *, now: datetime.datetime | None = None) -> dict[str, Any]:
    """The draft notice as a JSON-ready dict."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ev, fit = summary["event"], summary["best_fit"]
    r50, r90 = headline(summary)
    name = event_name(ev.get("time_utc"))
    return {
        "format": NOTICE_FORMAT,
        "draft": True,
        "draft_note": DRAFT_NOTE,
        "mission": "IceCube",
        "instrument": "IceCube Neutrino Observatory",
        "messenger": "Neutrino",
        "record_number": 1,
        "alert_datetime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "alert_tense": "current",
        "alert_type": "initial",
        "trigger_time": _iso_z(ev.get("time_utc")),
        "id": [name, f"{ev.get('run_id')}:{ev.get('event_id')}"],
        "event_name": name,
        "event_type": ev.get("event_type"),
        "ra": fit["ra_deg"],
        "dec": fit["dec_deg"],
        "ra_dec_error": round(math.sqrt(r90["area_deg2"] / math.pi), 4),
        "ra_dec_error_note": "radius (deg) of the circle with the area of the 90% region; "
                             "use ra_error_90/dec_error_90 or the FITS map for its shape",
        "containment_probability": r90["containment"],
        "systematic_included": HEADLINE.systematic_included,
        "ra_error_90": {"minus": r90["ra_err_deg"][0], "plus": r90["ra_err_deg"][1]},
        "dec_error_90": {"minus": r90["dec_err_deg"][0], "plus": r90["dec_err_deg"][1]},
        "ra_error_50": {"minus": r50["ra_err_deg"][0], "plus": r50["ra_err_deg"][1]},
        "dec_error_50": {"minus": r50["dec_err_deg"][0], "plus": r50["dec_err_deg"][1]},
        "area_90_deg2": r90["area_deg2"],
        "area_50_deg2": r50["area_deg2"],
        "regions": summary.get("headline_regions", {}).get("description", HEADLINE.description),
        "scan_complete": summary.get("scan_complete"),
        "healpix_file": fits_name,
        "reco": summary["provenance"].get("reco"),
    }


def _two(x: float) -> str:
    return f"{x:.2f}"


def circular(summary: Mapping[str, Any]) -> str:
    """The draft circular text (numbers from the summary, rounded to 0.01 as circulars give them)."""
    ev, fit = summary["event"], summary["best_fit"]
    r50, r90 = headline(summary)
    t = ev.get("time_utc") or "????-??-??T??:??:??.??"
    date, _, clock = t.partition("T")
    clock = clock[:11]  # hh:mm:ss.ss
    name = event_name(ev.get("time_utc"))
    reco = summary["provenance"].get("reco")
    reco_text = f"the {reco} reconstruction" if reco else "a reconstruction the result does not record"
    stream = ev.get("event_type") or "?"
    lines = [
        f"*** {DRAFT_NOTE}.",
        "*** Check the event letter (A = first alert of the day), the stream, the signalness and",
        "*** energy (not known to the scanner) and the wording. ***",
        "",
        "TITLE:   GCN CIRCULAR",
        f"SUBJECT: {name} - IceCube observation of a high-energy neutrino candidate track-like event",
        "",
        "The IceCube Collaboration reports:",
        "",
        f"On {date} at {clock} UT IceCube detected a track-like event (run {ev.get('run_id')}, "
        f"event {ev.get('event_id')}, stream {stream}).",
        f"A likelihood scan over the sky with {reco_text} gives the direction:",
        "",
        f"Date: {date}",
        f"Time: {clock} UT",
        f"RA: {_two(fit['ra_deg'])} (+{_two(r90['ra_err_deg'][1])} -{_two(r90['ra_err_deg'][0])} "
        "deg 90% PSF containment) J2000",
        f"Dec: {_two(fit['dec_deg'])} (+{_two(r90['dec_err_deg'][1])} -{_two(r90['dec_err_deg'][0])} "
        "deg 90% PSF containment) J2000",
        "",
        f"The 90% containment region covers {_two(r90['area_deg2'])} sq. deg "
        f"(50%: {_two(r50['area_deg2'])} sq. deg).",
        f"Regions: {summary.get('headline_regions', {}).get('description', HEADLINE.description)}.",
    ]
    if summary.get("scan_complete") is False:
        lines += ["", "NOTE: this scan is INCOMPLETE (a partial result); the region may be larger."]
    pointed = summary.get("pointed")
    if pointed and pointed.get("region_touches_edge"):
        lines += ["", f"NOTE: the 90% region reaches the edge of the pointed scan's disc "
                      f"({pointed.get('radius_deg')} deg around {pointed.get('name')}); it may be larger."]
    lines += [
        "",
        "IceCube is a cubic-kilometer neutrino detector operating at the geographic South Pole, Antarctica.",
        "",
    ]
    return "\n".join(lines)

"""A pulse map in flat arrays: the pure-numpy stand-in for IceTray's ``I3RecoPulseSeriesMap``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LC_FLAG = 1  # I3RecoPulse flag bit: local coincidence (HLC)


@dataclass(frozen=True)
class PulseMap:
    """Pulses grouped by DOM key, keys sorted by (string, om, pmt).

    ``keys`` is (n_keys, 3) int64 (string, om, pmt); ``counts`` the pulses per key;
    the flat pulse arrays hold the pulses key by key, each key's pulses time-ordered.
    Times in ns (float64), charges in PE and widths in ns (float32), flags as IceTray's bits.
    """

    keys: np.ndarray
    counts: np.ndarray
    time_ns: np.ndarray
    charge_pe: np.ndarray
    width_ns: np.ndarray
    flags: np.ndarray

    @property
    def n_keys(self) -> int:
        return int(self.keys.shape[0])

    @property
    def n_pulses(self) -> int:
        return int(self.time_ns.size)

    @property
    def offsets(self) -> np.ndarray:
        """Index of each key's first pulse in the flat arrays."""
        return np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)

    @property
    def string(self) -> np.ndarray:
        """Per pulse: its DOM's string number."""
        return np.repeat(self.keys[:, 0], self.counts)

    @property
    def om(self) -> np.ndarray:
        """Per pulse: its DOM's om number."""
        return np.repeat(self.keys[:, 1], self.counts)

    @property
    def lc(self) -> np.ndarray:
        """Per pulse: the local-coincidence (HLC) bit."""
        return (self.flags & LC_FLAG).astype(bool)

    def select(self, keep_key: np.ndarray, keep_pulse: np.ndarray) -> PulseMap:
        """Keep the pulses where ``keep_pulse``; keys where ``keep_key`` (keys left empty are dropped)."""
        key_of_pulse = np.repeat(np.arange(self.n_keys), self.counts)
        per_key = np.bincount(key_of_pulse[keep_pulse], minlength=self.n_keys).astype(np.int64)
        kk = keep_key & (per_key > 0)
        kp = keep_pulse & np.repeat(kk, self.counts)
        return PulseMap(
            keys=self.keys[kk], counts=per_key[kk],
            time_ns=self.time_ns[kp], charge_pe=self.charge_pe[kp],
            width_ns=self.width_ns[kp], flags=self.flags[kp],
        )

    def in_ice(self) -> PulseMap:
        """Only in-ice DOMs (om 1-60), i.e. without IceTop."""
        return self.select(self.keys[:, 1] <= 60, np.ones(self.n_pulses, dtype=bool))

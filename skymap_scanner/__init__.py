"""skymap_scanner: likelihood scans of IceCube event directions over the sky."""

__version__ = "0.1.0"

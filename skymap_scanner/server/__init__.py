"""The scan server: ``python -m skymap_scanner.server``."""

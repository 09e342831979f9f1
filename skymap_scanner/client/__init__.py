"""The scan client: ``python -m skymap_scanner.client``."""

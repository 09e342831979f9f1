"""Command-line utilities (convert, describe, simulate, products) and small helpers."""

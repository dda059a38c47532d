"""The version of tumorpde (one place; the package and run.json read it)."""

__version__ = "0.1.0"

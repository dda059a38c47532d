"""Benchmarks of tumorpde (``make bench``); not part of the installed package."""

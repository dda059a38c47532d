"""Verification and validation of tumorpde (issue #4).

* :mod:`~tumorpde.verification.mms`: manufactured solutions for any config (sympy sources
  written back as config expressions) and a small TOML writer;
* :mod:`~tumorpde.verification.configs`: the verification problems as config dictionaries;
* :mod:`~tumorpde.verification.runner`: running them and measuring errors and orders;
* :mod:`~tumorpde.verification.analysis`: fronts, fits and self-convergence;
* :mod:`~tumorpde.verification.cases`: the cases with their checks and figures;
* :mod:`~tumorpde.verification.report`: ``python -m tumorpde.verification`` writes
  ``docs/verification.md`` (``make verify``).
"""

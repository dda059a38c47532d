"""Calibration: fit a model's parameters to data, with derivatives of the discrete run.

* :mod:`~tumorpde.calibration.data`: long-format CSV data (field and observable samples);
* :mod:`~tumorpde.calibration.operators`: what the model says about each data row;
* :mod:`~tumorpde.calibration.sensitivity`: discrete adjoint and tangent of the stepping;
* :mod:`~tumorpde.calibration.objective`: the misfit, its gradient and residual Jacobian.
"""

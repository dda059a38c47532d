"""Calibration: fit a model's parameters to data, with derivatives of the discrete run.

* :mod:`tumorpde.io.data` reads the data (long-format CSV: field and observable samples);
* :mod:`~tumorpde.calibration.operators`: what the model says about each data row;
* :mod:`~tumorpde.calibration.sensitivity`: discrete adjoint and tangent of the stepping;
* :mod:`~tumorpde.calibration.objective`: the misfit, its gradient and residual Jacobian;
* :mod:`~tumorpde.calibration.fit`: bounded least squares, intervals, AIC/BIC, outputs.
"""

"""The model layer: plain objects, validation, units, expressions, compartments, pharmacology.

Nothing here loads DOLFINx, UFL or petsc4py.  The dataclasses of a model (``Config``,
``Species``, ``Parameter``, ...) live in :mod:`tumorpde.model.objects` and are importable
from here: ``from tumorpde.model import Config, Species``.
"""

from tumorpde.model.objects import *  # noqa: F403
from tumorpde.model.objects import __all__  # noqa: F401

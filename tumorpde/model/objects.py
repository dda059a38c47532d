"""The model as plain typed objects (no DOLFINx).

Each class maps one-to-one onto a TOML table of the same shape: the TOML keys
are the field names.  :func:`tumorpde.model.config.load` builds a :class:`Config`
from a file; the objects can equally be built in Python and passed to
:func:`tumorpde.simulation.run`.

A *coefficient* (diffusion, initial value) is a number, a parameter name, an
expression string, or a per-region table ``{region = value, ..., default = value}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Coefficient",
    "Units",
    "Mesh",
    "Time",
    "Output",
    "Discretisation",
    "Taxis",
    "Boundary",
    "Species",
    "Parameter",
    "Observable",
    "Drug",
    "Therapy",
    "Scalar",
    "Calibration",
    "Config",
]

Coefficient = float | str | dict[str, float | str]


@dataclass
class Units:
    """``[units]``: the model's units of length and time."""

    length: str = "mm"
    time: str = "day"


@dataclass
class Mesh:
    """``[mesh]``: the domain.

    Attributes:
        shape: ``interval`` | ``rectangle`` | ``box`` | ``disk`` | ``sphere`` | ``file``.
        size: Edge lengths (interval, rectangle, box), from ``origin``.
        cells: Cells per direction (interval, rectangle, box).
        origin: Lower corner (default the origin).
        radius: Radius (disk, sphere).
        center: Centre (disk, sphere; default the origin).
        cell_size: Target cell size for gmsh meshes (default radius/16).
        file: A gmsh ``.msh`` or DOLFINx ``.xdmf`` mesh with named regions/boundaries.
        regions: Extra named regions: name -> condition on ``x, y, z`` at cell midpoints.
        boundaries: Extra named boundaries: name -> condition on boundary-facet midpoints.
        remove: Condition on cell midpoints: those cells are removed from the mesh (for
            example a strip that splits it into disconnected parts).
        cell: Cell type of a rectangle (``triangle``, the default, or ``quadrilateral``)
            or a box (``tetrahedron``, the default, or ``hexahedron``).
        coordinates: ``cartesian`` (the default); ``spherical`` (an interval is the radius
            of a radially symmetric ball or shell, weight ``4 pi r^2``) or ``cylindrical``
            (an interval is the radius of a radially symmetric disc, weight ``2 pi r``; a
            rectangle is the ``(r, z)`` half-plane of an axisymmetric body, weight
            ``2 pi r``).  The radial coordinate is ``x`` and must be >= 0.
    """

    shape: str = "rectangle"
    size: list[float] = field(default_factory=lambda: [1.0, 1.0])
    cells: list[int] = field(default_factory=lambda: [32, 32])
    origin: list[float] | None = None
    radius: float = 1.0
    center: list[float] | None = None
    cell_size: float | None = None
    file: str | None = None
    regions: dict[str, str] = field(default_factory=dict)
    boundaries: dict[str, str] = field(default_factory=dict)
    remove: str | None = None
    coordinates: str = "cartesian"
    cell: str | None = None


@dataclass
class Time:
    """``[time]``: time integration.

    Attributes:
        end: Final time (model units).
        dt: Initial / fixed time step.
        start: Initial time.
        scheme: ``backward-euler`` or ``bdf2`` (variable-step).
        adaptive: Error-controlled step size, cut back on solver failure.
        output_every: Interval of field output (times are hit exactly); default (end-start)/10.
        dt_min: Smallest step before the run is declared failed (default 1e-9*(end-start)).
        dt_max: Largest step (default output_every).
        rtol: Relative tolerance of the adaptive error estimate.
        atol: Absolute tolerance of the adaptive error estimate.
        negative_tolerance: Relative undershoot below zero (of the species' largest
            magnitude) that rejects a step of a ``nonnegative`` species.
        max_failures: Consecutive failed attempts of one step before the run stops.
    """

    end: float = 1.0
    dt: float = 0.01
    start: float = 0.0
    scheme: str = "bdf2"
    adaptive: bool = False
    output_every: float | None = None
    dt_min: float | None = None
    dt_max: float | None = None
    rtol: float = 1e-3
    atol: float = 1e-6
    negative_tolerance: float = 1e-3
    max_failures: int = 10


@dataclass
class Output:
    """``[output]``: what is written.

    Attributes:
        checkpoint_every: Model-time interval of checkpoints (default: at every output time);
            ``tumorpde resume DIR`` continues from the last one.
        fields: Species written to ``fields.xdmf`` (default: all).
        progress: Show a progress bar on rank 0.
    """

    checkpoint_every: float | None = None
    fields: list[str] | None = None
    progress: bool = True


@dataclass
class Discretisation:
    """``[discretisation]``.

    Attributes:
        degree: Lagrange degree, 1 or 2.
        taxis: ``upwind`` (edge-based, positivity-preserving, conservative; P1 only)
            or ``galerkin`` (plain Galerkin; may go negative).
        lumped_mass: Vertex-quadrature (lumped) mass and reaction terms for P1.
    """

    degree: int = 1
    taxis: str = "upwind"
    lumped_mass: bool = True


@dataclass
class Taxis:
    """One taxis term ``-div(sensitivity * grad(toward))`` of a species."""

    toward: str
    sensitivity: float | str


@dataclass
class Boundary:
    """A boundary condition on one named boundary (no-flux where none is given).

    Exactly one of:
      * ``value``: Dirichlet, u = value;
      * ``flux``: inward flux, D grad(u).n = flux;
      * ``transfer`` with ``value``: Robin, D grad(u).n = transfer*(value - u).
    """

    value: float | str | None = None
    flux: float | str | None = None
    transfer: float | str | None = None


@dataclass
class Species:
    """``[species.NAME]``: one field and the terms of its equation.

    du/dt = div(D grad u) - sum_k div(S_k grad c_k) + reaction.

    Attributes:
        diffusion: D (coefficient); ignored when ``diffuses`` is false.
        reaction: Reaction/source term (expression in all species, parameters, x, y, z, t).
        initial: Initial value (coefficient), or ``{data = "FILE.csv", time = T0}``: the
            field samples of this species at ``T0`` (default ``time.start``) in a data file
            (``t, x[, y, z], field, value``; replicates averaged), interpolated linearly
            and constant (the nearest sample) outside the data's hull.  Or
            ``{image = "FILE.nii.gz", scale = S}``: a NIfTI image (physical coordinates from
            its affine, in the model's length unit) interpolated trilinearly at the nodes,
            times ``S`` (default 1), zero outside the image.
        taxis: Taxis terms.
        diffuses: False for ECM-like fields solved as local ODEs at each point.
        boundary: Boundary name -> :class:`Boundary`.
        units: Units of this species' density (default dimensionless).
        description: Free text.
        nonnegative: A density or concentration: a step that leaves it below
            ``-(time.negative_tolerance * max|u| + time.atol)`` is rejected and retried with a
            smaller step.  Set false for fields that may change sign.
    """

    diffusion: Coefficient = 0.0
    reaction: float | str = 0.0
    initial: Coefficient = 0.0
    taxis: list[Taxis] = field(default_factory=list)
    diffuses: bool = True
    boundary: dict[str, Boundary] = field(default_factory=dict)
    units: str | None = None
    description: str = ""
    nonnegative: bool = True


@dataclass
class Parameter:
    """A parameter with its provenance (the table form of ``[parameters]``).

    ``NAME = value`` and ``NAME = { value = ..., description = ..., source = ... }``
    are equivalent; the table form feeds the generated parameter tables.

    Attributes:
        value: A number (model units) or a quantity string such as ``"0.01 mm^2/day"``.
        description: What the parameter means.
        source: Primary source (paper, table/figure) or ``assumed: <reason>``.
        symbol: Mathematical symbol used in the documentation.
        range: Literature range ``[low, high]`` in the same units as ``value`` (used by
            virtual cohorts).
        field: A spatially varying parameter: a finite-element field on the species' space,
            ``value`` everywhere at first, that can be set node by node
            (``Problem.reset``) and calibrated node by node (``tumorpde calibrate``).  It
            may appear in species terms, not in scalar compartments or value observables.
        image: A NIfTI image the field is read from (makes the parameter a field): its
            voxel values interpolated trilinearly at the nodes, in the unit ``value`` is
            written in; ``value`` where a node lies outside the image.
        labels: With ``image``: the image is a label map (tissue classes) and this table
            gives the value of each label (``{ 1 = 0.02, 2 = 0.1 }``, same unit); a node
            takes the label of the voxel it lies in, ``value`` for unlisted labels.
    """

    value: float | str
    description: str = ""
    source: str = ""
    symbol: str = ""
    range: list[float] | None = None
    field: bool = False
    image: str | None = None
    labels: dict[str, float] | None = None


@dataclass
class Observable:
    """``[observables.NAME]``: a scalar recorded at every step in ``observables.csv``.

    A plain string ``NAME = "expr"`` is the integral of ``expr`` over the domain.
    The table form chooses the reduction:

    Attributes:
        integral: Integrate this expression over the domain ...
        maximum: ... or take its maximum over the mesh nodes ...
        minimum: ... or its minimum ...
        value: ... or evaluate an expression of scalar compartments, drugs, parameters
            and ``t`` (no fields) ...
        radius: ... or, on an interval mesh, the position where this expression crosses
            the level ``above`` or ``below`` (the outer edge of the region where it is
            ``>= above`` or ``< below``; see :mod:`tumorpde.fem.radius`).
        above: With ``radius``: the level of a region where the expression is at or above it.
        below: With ``radius``: the level of a region where the expression is below it.
        per: Divide the integral by the integral of this expression (an average or a
            fraction; 0 where that integral vanishes).
        cumulative: Record the time integral of the value since the start instead.
        description: Free text (documentation).
    """

    integral: str | None = None
    maximum: str | None = None
    minimum: str | None = None
    value: str | None = None
    radius: str | None = None
    above: float | None = None
    below: float | None = None
    per: str | None = None
    cumulative: bool = False
    description: str = ""


@dataclass
class Drug:
    """``[drugs.NAME]``: a drug (or radiation) that ``[[therapy]]`` tables can give.

    ``NAME`` is a symbol in every expression.  A ``bolus`` drug's value is its plasma
    level: the sum over the doses given so far of ``dose*exp(-ln(2)*(t - t_i)/half_life)``
    (averaged over each time step, see docs/numerics.md).  A ``fraction`` (radiotherapy)
    acts at the dose times only: each species in ``survival`` is multiplied by its
    surviving fraction, an expression in which ``NAME`` is the dose of that fraction.

    Attributes:
        kind: ``bolus`` (first-order elimination) or ``fraction`` (instantaneous).
        half_life: Elimination half-life (``bolus``), a time or a number in model units.
        dose: Default dose of a therapy (plasma-level units for ``bolus``; Gy per
            fraction for radiotherapy).
        every: Default interval between doses.
        doses: Default number of doses.
        cycle: Default cycle length: the ``doses`` doses, ``every`` apart, are one cycle,
            which repeats every ``cycle`` (``None``: one course, no repetition).
        cycles: Default number of cycles (``None`` with a ``cycle``: repeated until
            ``time.end``).
        survival: ``fraction``: species -> surviving fraction (expression).
        region: ``fraction``: default target, a mesh region (``None`` or ``"all"``: the
            whole mesh); a therapy's own ``region`` replaces it.
        description: Mechanism (documentation).
        source: Primary sources of the pharmacokinetics and the default regimen.
    """

    kind: str = "bolus"
    half_life: float | str | None = None
    dose: float = 1.0
    every: float | str | None = None
    doses: int = 1
    cycle: float | str | None = None
    cycles: int | None = None
    survival: dict[str, str] = field(default_factory=dict)
    region: str | None = None
    description: str = ""
    source: str = ""


@dataclass
class Therapy:
    """One ``[[therapy]]`` table: ``doses`` doses of ``drug`` from ``start``, ``every`` apart.

    ``every``, ``doses``, ``dose``, ``cycle`` and ``cycles`` default to the drug's standard
    regimen: with a ``cycle``, the doses form one cycle, repeated every ``cycle`` from
    ``start``, ``cycles`` times (until ``time.end`` when no number is given).  ``region``
    (``fraction`` drugs) restricts each fraction to a mesh region (``"all"``: the whole
    mesh; default: the drug's ``region``).
    """

    drug: str
    start: float | str
    every: float | str | None = None
    doses: int | None = None
    dose: float | None = None
    cycle: float | str | None = None
    cycles: int | None = None
    region: str | None = None


@dataclass
class Scalar:
    """``[scalars.NAME]``: a well-mixed compartment, one global unknown obeying an ODE.

    ``d(NAME)/dt = reaction``, where ``reaction`` is an expression in scalars,
    parameters, drugs, ``t`` and the (instantaneous) observables of the fields.  The
    scalar is a symbol in every field expression, so fields and compartments are coupled
    through integrals (observables) one way and through the scalar's value the other.

    Attributes:
        reaction: Right-hand side.
        initial: Initial value (a number or an expression in parameters).
        units: Units of the scalar (default dimensionless).
        description: Free text.
    """

    reaction: float | str = 0.0
    initial: float | str = 0.0
    units: str | None = None
    description: str = ""


@dataclass
class Calibration:
    """``[calibration]``: the data and parameters that a scenario is calibrated with.

    ``tumorpde calibrate CONFIG`` uses them: ``--data`` files replace ``data``, ``--fit``
    arguments add to ``fit`` (and ``--fit KEY=LOW:HIGH`` overrides the bounds given here).

    Attributes:
        data: Data files (CSV, see docs/calibration.md), relative to the config file.
        fit: Parameter key (``rho`` or ``parameters.rho``) -> bounds ``[low, high]`` in the
            parameter's units; an empty list takes the parameter's ``range``.
        until: Fit only data with ``t <= until`` (later rows are forecast).
        method: ``"lsq"`` (bounded least squares).
        starts: Number of least-squares starts (the config's values, then a Latin
            hypercube within the bounds; default 3).
        max_evaluations: Forward runs each least-squares start may take (default 200);
            a start that reaches it ends ``stopped``.
        regularise: Field parameter key -> ``alpha`` of the smoothness penalty
            ``alpha/2 int |grad p|^2 dx`` of a fitted field.
    """

    data: list[str] = field(default_factory=list)
    fit: dict[str, list[float]] = field(default_factory=dict)
    until: float | None = None
    method: str = "lsq"
    starts: int = 3
    max_evaluations: int = 200
    regularise: dict[str, float] = field(default_factory=dict)


@dataclass
class Config:
    """A whole simulation: the root of the TOML file.

    ``definitions`` names sub-expressions (``cancer = "tumor + csc"``) usable in every
    expression after them; ``knockout`` lists species held at zero with their sources
    removed (the CLI's ``--knockout NAME``).  ``scalars`` are global ODE unknowns,
    ``drugs`` the agents that the ``therapy`` regimens give.
    """

    species: dict[str, Species]
    mesh: Mesh = field(default_factory=Mesh)
    time: Time = field(default_factory=Time)
    units: Units | None = None
    output: Output = field(default_factory=Output)
    parameters: dict[str, float | str | Parameter] = field(default_factory=dict)
    discretisation: Discretisation = field(default_factory=Discretisation)
    solver: dict[str, Any] = field(default_factory=dict)
    observables: dict[str, Observable] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=dict)
    knockout: list[str] = field(default_factory=list)
    scalars: dict[str, Scalar] = field(default_factory=dict)
    drugs: dict[str, Drug] = field(default_factory=dict)
    therapy: list[Therapy] = field(default_factory=list)
    calibration: Calibration | None = None
    title: str = ""
    description: str = ""

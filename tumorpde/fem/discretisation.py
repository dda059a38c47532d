"""Finite-element discretisation: function spaces and the residual from labelled terms.

All species live in one blocked Lagrange space (component k = species k).  The
semi-discrete residual is assembled from labelled terms:

* ``mass``      (c0 u + c1 u_n + c2 u_nm1) . phi with the scheme's coefficients
                (lumped, vertex quadrature, for P1 by default);
* ``diffusion`` D grad u . grad phi;
* ``taxis``     edge fluxes (:mod:`tumorpde.fem.taxis`, P1 ``upwind``) or the Galerkin
                term -S grad s . grad phi;
* ``reaction``  -f phi (lumped for P1 by default, so local kinetics act node-wise);
* ``boundary``  -flux phi ds or -transfer (value - u) phi ds; Dirichlet values as
                DirichletBC.

Time, step and scheme coefficients and all parameters are ``fem.Constant``, so
forms are compiled once per run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from mpi4py import MPI
from petsc4py import PETSc

import numpy as np

from tumorpde.compat import import_dolfinx
from tumorpde.errors import ConfigError
from tumorpde.fem.mesh import Domain
from tumorpde.fem.taxis import EdgeGraph, EdgeTaxis, TaxisTerm, add_entries
from tumorpde.model import expressions as ex
from tumorpde.model import units as un
from tumorpde.model.spec import Spec, TermSpec, symbol_dims, term_factor

__all__ = ["Discretisation", "TERMS", "NODAL_TERMS"]

log = logging.getLogger("tumorpde")

import_dolfinx()
import basix.ufl  # noqa: E402
import ufl  # noqa: E402
import ufl.algorithms  # noqa: E402
from dolfinx import fem  # noqa: E402
from dolfinx.fem import petsc as fpetsc  # noqa: E402
from dolfinx.la import InsertMode as _InsertMode  # noqa: E402

_ADD = _InsertMode.add

#: labels of the residual's terms (:attr:`Discretisation.terms`)
TERMS = ("mass", "diffusion", "taxis", "reaction", "boundary")
#: the terms integrated at the vertices with lumped mass (P1): local kinetics
NODAL_TERMS = ("mass", "reaction")


@dataclass
class _BC:
    bc: Any
    func: Any
    expr: Any


@dataclass
class Discretisation:
    """Spaces, functions, forms and assembly callbacks of one model on one domain."""

    spec: Spec
    domain: Domain
    V: Any = None
    V0: Any = None
    u: Any = None
    u_n: Any = None
    u_nm1: Any = None
    t: Any = None
    coeffs: Any = None
    constants: dict[str, Any] = field(default_factory=dict)
    edge_taxis: list[EdgeTaxis] = field(default_factory=list)
    bcs: list[_BC] = field(default_factory=list)
    #: the split strategy's Jacobian, kept with the discretisation once built
    #: (:func:`tumorpde.solvers.splitting.for_discretisation`)
    split_jacobian: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        spec, dom = self.spec, self.domain
        mesh = dom.mesh
        self.comm: MPI.Comm = mesh.comm
        self.n = n = len(spec.names)
        self.degree = spec.config.discretisation.degree
        cell = mesh.basix_cell()
        # one species: a scalar space; several: one blocked space (component k = species k)
        shape = (n,) if n > 1 else None
        self.V = fem.functionspace(mesh, basix.ufl.element("Lagrange", cell, self.degree,
                                                           shape=shape))
        if n > 1:
            self.V0, maps = self.V.sub(0).collapse()
            cmap = np.asarray(maps[0] if isinstance(maps, list | tuple) else maps)
            if not np.array_equal(cmap, np.arange(len(cmap)) * n):  # pragma: no cover
                raise RuntimeError("unexpected dof layout of the collapsed component space")
        else:
            self.V0 = self.V
        self.V1 = fem.functionspace(mesh, ("Lagrange", 1))  # output space
        self.u = fem.Function(self.V, name="state")
        self.u_n = fem.Function(self.V, name="state_n")
        self.u_nm1 = fem.Function(self.V, name="state_nm1")
        self.t = fem.Constant(mesh, PETSc.ScalarType(spec.config.time.start))
        self._symbol_cache: dict[int, dict[str, tuple[Any, ex.Dim]]] = {}
        self.Q = fem.functionspace(mesh, ("DG", 0))  # cell-wise fields (regions, constants)
        self.unit_field = fem.Function(self.Q, name="one")
        self.unit_field.x.array[:] = 1.0
        # time derivative ~ c0 u + c1 u_n + c2 u_nm1
        self.coeffs = [fem.Constant(mesh, PETSc.ScalarType(v)) for v in (1.0, -1.0, 0.0)]
        #: parameters that are fields (``field = true``): functions on the species' space
        self.parameter_fields: dict[str, Any] = {}
        for name, (value, _unit) in spec.parameters.items():
            if name in spec.fields:
                f = fem.Function(self.V0, name=name)
                f.x.array[:] = value
                self._image_parameter(name, f)
                self.parameter_fields[name] = self.constants[name] = f
            else:
                self.constants[name] = fem.Constant(mesh, PETSc.ScalarType(value))
        # drug levels and scalar compartments: set per step by tumorpde.time.coupling
        for name in spec.config.drugs:
            self.constants[name] = fem.Constant(mesh, PETSc.ScalarType(0.0))
        for name, sc in spec.scalars.items():
            self.constants[name] = fem.Constant(mesh, PETSc.ScalarType(sc.initial))
        self._indicators = self._region_indicators()
        self._setup_weight()
        self._build_forms()

    # ------------------------------------------------------------------ coordinates
    def _setup_weight(self) -> None:
        """The volume weight of ``mesh.coordinates`` (None for Cartesian coordinates).

        ``spherical``: ``4 pi r^2``, ``cylindrical``: ``2 pi r``, with ``r = x``; every
        integral of the forms, observables and totals carries it, so that they are the
        integrals over the ball, disc or axisymmetric body.  Terms integrated at the
        vertices (lumped mass, reactions) use its nodal value :attr:`nodal_weight`
        ``W_i = int(w phi_i) / int(phi_i)``: the lumped weighted mass ``int(w phi_i)`` is
        exact, and positive at ``r = 0``, where ``w`` itself vanishes.
        """
        coords = self.spec.config.mesh.coordinates
        self.coordinates = coords
        self.weight: Any = None
        self.nodal_weight: Any = None
        if coords == "cartesian":
            return
        r = ufl.SpatialCoordinate(self.domain.mesh)[0]
        self.weight = 4 * ufl.pi * r**2 if coords == "spherical" else 2 * ufl.pi * r
        lumped = self.degree == 1 and self.spec.config.discretisation.lumped_mass
        if lumped:
            W = fem.Function(self.V0, name="nodal_weight")
            nloc = self.V0.dofmap.index_map.size_local
            W.x.array[:nloc] = self.volume_mass() / self.lumped_mass()
            W.x.scatter_forward()
            self.nodal_weight = W
        else:
            self.nodal_weight = self.weight

    def weighted(self, expr: Any, nodal: bool = False) -> Any:
        """``expr`` times the volume weight (nodal: its vertex values), unchanged if Cartesian."""
        w = self.nodal_weight if nodal else self.weight
        return expr if w is None else w * expr

    def volume_mass(self) -> np.ndarray:
        """``int(w phi_i)`` of the owned P1 nodes, with the volume weight ``w``.

        Exactly integrated; the lumped mass where the coordinates are Cartesian.
        """
        if self.weight is None:
            return self.lumped_mass()
        if self.__dict__.get("_volume_mass") is None:
            w = fem.Function(self.V0)
            fem.assemble_vector(w.x.array, fem.form(self.weight * ufl.TestFunction(self.V0)
                                                    * ufl.dx(domain=self.domain.mesh)))
            w.x.scatter_reverse(_ADD)
            self.__dict__["_volume_mass"] = w.x.array[: self.V0.dofmap.index_map.size_local].copy()
        return self.__dict__["_volume_mass"]

    @property
    def held_components(self) -> tuple[int, ...]:
        """Components (species indices) held at zero: knocked out, without sources or inflow."""
        return self.spec.held

    def comp(self, f: Any, k: int) -> Any:
        """Component ``k`` of a (blocked) function or test function."""
        return f[k] if self.n > 1 else f

    def compile_expression(self, e: Any, points: Any) -> Any:
        """A compiled interpolation expression (constants allowed)."""
        # the factor `unit_field` (a DG0 function equal to 1) ties constant expressions to the mesh
        # (UFL folds exact zeros, so those become a zero field on the mesh)
        expr = ufl.as_ufl(e) * self.unit_field
        if is_zero(expr):  # keep the shape: a zero vector stays a vector
            zero = self.unit_field - self.unit_field
            shape = ufl.shape(expr)
            expr = ufl.as_vector([zero] * shape[0]) if shape else zero
        return fem.Expression(expr, points, comm=self.comm)

    # ------------------------------------------------------------------ symbols
    def _symbols(self, state: Any) -> dict[str, tuple[Any, ex.Dim]]:
        """Symbol table for expressions of ``state`` (``u``, or ``None``: species are 0).

        Built once per state: the definitions are lowered here, not in every term.
        """
        key = id(state)
        if key in self._symbol_cache:
            return self._symbol_cache[key]
        dims = symbol_dims(self.spec)
        X = ufl.SpatialCoordinate(self.domain.mesh)
        gdim = self.domain.gdim
        out = ex.reserved_symbols([X[i] for i in range(gdim)], self.t, dims)
        for k, name in enumerate(self.spec.names):
            out[name] = (self.comp(state, k) if state is not None else 0.0, dims[name])
        for p, c in self.constants.items():
            out[p] = (c, dims[p])
        ureg = un.registry() if self.spec.has_units else None
        for name, term in self.spec.definitions.items():
            out[name] = ex.lower(term.expr, out, term.key, ureg)
        self._symbol_cache[key] = out
        return out

    def lower(self, term: TermSpec, required: Any, state: Any) -> Any:
        """UFL for a coefficient (with unit conversion and per-region tables)."""
        syms = self._symbols(state)
        ureg = un.registry() if self.spec.has_units else None
        factors = term_factor(self.spec, term, required) if required is not None else \
            [1.0] * len(term.exprs)
        if term.expr is not None:
            v, _ = ex.lower(term.expr, syms, term.key, ureg)
            return v * factors[0] if factors[0] != 1.0 else v
        out: Any = 0.0
        named = 0.0
        for (region, expr), f in zip(term.regions.items(), factors, strict=True):
            if region == "default":
                continue
            chi = self.region_indicator(region, f"{term.key}.{region}")
            v, _ = ex.lower(expr, syms, f"{term.key}.{region}", ureg)
            out = out + chi * v * f
            named = named + chi
        if "default" in term.regions:
            f = factors[list(term.regions).index("default")]
            v, _ = ex.lower(term.regions["default"], syms, f"{term.key}.default", ureg)
            out = out + (1.0 - named) * v * f
        else:
            self._check_covered(term, named)
        return out

    def _region_indicators(self) -> dict[str, Any]:
        dom = self.domain
        if not dom.regions or dom.cell_tags is None:
            return {}
        Q = self.Q
        out = {}
        for name, tag in dom.regions.items():
            chi = fem.Function(Q, name=f"region_{name}")
            cells = dom.cell_tags.indices[dom.cell_tags.values == tag]
            chi.x.array[cells] = 1.0
            chi.x.scatter_forward()
            out[name] = chi
        return out

    def region_indicator(self, region: str, key: str) -> Any:
        """The cell-wise (DG0) indicator of a named region, on owned and ghost cells.

        Raises:
            ConfigError: ``region`` is not a region of the mesh (named by ``key``).
        """
        if region not in self._indicators:
            raise ConfigError(key, f"unknown region {region!r} (mesh regions: "
                                   f"{', '.join(sorted(self.domain.regions)) or 'none'})")
        return self._indicators[region]

    def region_nodes(self, region: str, key: str) -> np.ndarray:
        """Boolean mask of the local (owned and ghost) P1 nodes of a region's cells.

        A node on the region's edge belongs to it (the closure of its cells), on every
        rank alike (collective).

        Raises:
            ConfigError: ``region`` is not a region of the mesh (named by ``key``).
        """
        cells = np.flatnonzero(self.region_indicator(region, key).x.array > 0.5)
        w = fem.Function(self.V0)
        w.x.array[np.asarray(self.V0.dofmap.list)[cells].ravel()] = 1.0
        w.x.scatter_reverse(_ADD)
        w.x.array[:] = w.x.array > 0
        w.x.scatter_forward()
        return w.x.array > 0.5

    def _check_covered(self, term: TermSpec, named: Any) -> None:
        if isinstance(named, float):
            return
        Q = self.Q
        f = fem.Function(Q)
        f.interpolate(self.compile_expression(named, Q.element.interpolation_points))
        imap = self.domain.mesh.topology.index_map(self.domain.mesh.topology.dim)
        miss = int(np.sum(f.x.array[: imap.size_local] < 0.5))
        miss = self.comm.allreduce(miss, op=MPI.SUM)
        if miss:
            raise ConfigError(term.key, f"{miss} cells lie in none of the regions "
                                        f"{', '.join(term.regions)}: add a 'default' entry")

    # ------------------------------------------------------------------ forms
    def _build_forms(self) -> None:
        spec = self.spec
        mesh = self.domain.mesh
        L, T = spec.length_unit, spec.time_unit
        u, v = self.u, ufl.TestFunction(self.V)
        lumped = self.degree == 1 and spec.config.discretisation.lumped_mass
        meta = {"quadrature_rule": "vertex", "quadrature_degree": 1} if lumped else {}
        dxm = ufl.Measure("dx", domain=mesh, metadata=meta)
        dx = ufl.Measure("dx", domain=mesh)
        ds = ufl.Measure("ds", domain=mesh, subdomain_data=self.domain.facet_tags)
        use_edges = self.degree == 1 and spec.config.discretisation.taxis == "upwind"
        has_taxis = any(s.taxis for s in spec.species.values())
        if has_taxis and use_edges and self.weight is not None:
            raise ConfigError("discretisation.taxis", "'upwind' (the edge fluxes) is for "
                              f"Cartesian coordinates; with mesh.coordinates = "
                              f"{self.coordinates!r} use 'galerkin'")
        if has_taxis and use_edges and mesh.topology.cell_name() not in \
                ("interval", "triangle", "tetrahedron"):
            raise ConfigError("discretisation.taxis", "'upwind' (the edge fluxes) needs "
                              "simplex cells; with mesh.cell = "
                              f"{mesh.topology.cell_name()!r} use 'galerkin'")
        if has_taxis and self.degree > 1 and spec.config.discretisation.taxis == "upwind" \
                and self.comm.rank == 0:
            log.warning("edge upwinding of taxis is for P1; P%d uses Galerkin taxis "
                        "(non-negativity not guaranteed)", self.degree)
        c0, c1, c2 = self.coeffs
        F: Any = 0
        #: (label, form) of every term of the residual, in the order of F's terms
        self.terms: list[tuple[str, Any]] = []

        def add(label: str, term: Any) -> None:
            nonlocal F
            F = F + term
            self.terms.append((label, term))

        self.diffusion_exprs: dict[int, Any] = {}
        #: each species' reaction rate f (UFL of the state), by species index
        self.reaction_exprs: dict[int, Any] = {}
        edge_terms = []
        bc_specs = []
        for name in spec.names:
            s = spec.species[name]
            k = s.index
            def req(kind: str, other: Any = None, unit: Any = s.unit) -> Any:
                return un.required_units(kind, L, T, unit, other) if spec.has_units else None
            uk, vk = self.comp(u, k), self.comp(v, k)
            udot = c0 * uk + c1 * self.comp(self.u_n, k) + c2 * self.comp(self.u_nm1, k)
            add("mass", self.weighted(udot * vk, nodal=True) * dxm)
            if s.diffusion is not None:
                D = self.lower(s.diffusion, req("diffusion"), u)
                self.diffusion_exprs[k] = D
                add("diffusion", self.weighted(D * ufl.inner(ufl.grad(uk), ufl.grad(vk))) * dx)
            for toward, sens in s.taxis:
                m = spec.species[toward].index
                S = self.lower(sens, req("sensitivity", spec.species[toward].unit), u)
                if use_edges:
                    edge_terms.append((k, m, S))
                else:
                    add("taxis", -(self.weighted(S * ufl.inner(ufl.grad(self.comp(u, m)),
                                                               ufl.grad(vk))) * dx))
            f = self.lower(s.reaction, req("reaction"), u)
            self.reaction_exprs[k] = f
            add("reaction", -(self.weighted(f * vk, nodal=True) * dxm))
            for bname, bc in s.boundary.items():
                if bname not in self.domain.boundaries:
                    raise ConfigError(f"species.{name}.boundary.{bname}",
                                      f"unknown boundary {bname!r} (mesh boundaries: "
                                      f"{', '.join(sorted(self.domain.boundaries)) or 'none'})")
                tag = self.domain.boundaries[bname]
                if "flux" in bc:
                    g = self.lower(bc["flux"], req("flux"), u)
                    add("boundary", -(self.weighted(g * vk) * ds(tag)))
                elif "transfer" in bc:
                    h = self.lower(bc["transfer"], req("robin"), u)
                    ub = self.lower(bc["value"], req("value"), u)
                    add("boundary", -(self.weighted(h * (ub - uk) * vk) * ds(tag)))
                else:
                    bc_specs.append((k, tag, bc["value"], req("value")))
        self.F_ufl = F
        self.F = fem.form(F)
        self._J_ufl = ufl.derivative(F, u, ufl.TrialFunction(self.V))  # compiled on first use
        self._setup_bcs(bc_specs)
        self._setup_edge_taxis(edge_terms)
        self._setup_observables()

    @property
    def nodal_terms(self) -> tuple[str, ...]:
        """Labels of the terms integrated at the vertices (lumped mass): pointwise at the nodes."""
        lumped = self.degree == 1 and self.spec.config.discretisation.lumped_mass
        return NODAL_TERMS if lumped else ()

    def term_integrals(self, labels: tuple[str, ...]) -> list[Any]:
        """The integrals of the residual's terms with these labels, in the order of the terms."""
        return [it for label, term in self.terms if label in labels
                for it in (term.integrals() if isinstance(term, ufl.Form) else ())]

    def linearity(self) -> tuple[bool, list[Any]]:
        """Whether the residual is affine in the state, and the constants its Jacobian uses.

        Affine: no edge-upwind taxis (its limiter is nonlinear) and a Jacobian form that does
        not depend on the state.  The constants are those of the Jacobian form that change
        during a run (BDF coefficients, time, drug levels, scalar compartments): while they
        keep their values, the Jacobian is the same matrix.
        """
        if "_linearity" not in self.__dict__:
            du = ufl.TrialFunction(self.V)
            second = ufl.algorithms.expand_derivatives(ufl.derivative(self._J_ufl, self.u, du))
            affine = not self.edge_taxis and second.empty()
            used = set(ufl.algorithms.expand_derivatives(self._J_ufl).constants())
            varying = [*self.coeffs, self.t,
                       *(self.constants[n] for n in self.spec.config.drugs),
                       *(self.constants[n] for n in self.spec.scalars)]
            self.__dict__["_linearity"] = (affine, [c for c in varying if c in used])
        return self.__dict__["_linearity"]

    @property
    def J(self) -> Any:
        """The compiled Jacobian form of the whole blocked space (monolithic strategy only)."""
        if self.__dict__.get("_J") is None:
            self.__dict__["_J"] = fem.form(self._J_ufl)
        return self.__dict__["_J"]

    def _setup_bcs(self, bc_specs: list[tuple[int, int, TermSpec, Any]]) -> None:
        mesh = self.domain.mesh
        tdim = mesh.topology.dim
        for k, tag, term, req in bc_specs:
            Vsub = self.V.sub(k) if self.n > 1 else self.V
            Vk = Vsub.collapse()[0] if self.n > 1 else self.V
            g = fem.Function(Vk)
            expr = self.compile_expression(self.lower(term, req, None), Vk.element.interpolation_points)
            g.interpolate(expr)
            facets = self.domain.facet_tags.find(tag)
            if self.n > 1:
                dofs = fem.locate_dofs_topological((Vsub, Vk), tdim - 1, facets)
                bc = fem.dirichletbc(g, dofs, Vsub)
            else:
                bc = fem.dirichletbc(g, fem.locate_dofs_topological(Vk, tdim - 1, facets))
            self.bcs.append(_BC(bc, g, expr))
        # global indices of Dirichlet dofs (rows/columns the edge Jacobian must skip)
        local = np.zeros(0, dtype=np.int64)
        if self.bcs:
            local = np.unique(np.concatenate([b.bc.dof_indices()[0] for b in self.bcs]))
        imap = self.V.dofmap.index_map
        bs = self.V.dofmap.index_map_bs
        nodes = local // bs
        gnodes = np.asarray(imap.local_to_global(nodes.astype(np.int32)), dtype=np.int64)
        glob = gnodes * bs + local % bs
        self.bc_global = np.unique(np.concatenate(self.comm.allgather(glob))) if self.bcs \
            else np.zeros(0, dtype=np.int64)
        self.bc_local = local

    def _setup_edge_taxis(self, terms: list[tuple[int, int, Any]]) -> None:
        if not terms:
            return
        self.graph = EdgeGraph(self.V0, self.V.dofmap.index_map)
        worst = self.comm.allreduce(self.graph.min_weight, op=MPI.MIN)
        if worst < -1e-12 and self.comm.rank == 0:
            log.warning("the mesh has obtuse angles (negative edge weights, min %.3g): "
                        "taxis stays conservative but non-negativity is not guaranteed", worst)
        pts = self.V0.element.interpolation_points
        by_species: dict[int, list[tuple[int, Any]]] = {}
        for k, m, S in terms:
            by_species.setdefault(k, []).append((m, S))
        for k, items in by_species.items():
            exprs: list[tuple[Any, Any]] = []
            taxis_terms = []
            for m, S in items:
                Sf = fem.Function(self.V0)
                exprs.append((self.compile_expression(S, pts), Sf))
                dS = {}
                for comp in range(self.n):
                    d = component_derivative(S, self.u, comp, self.n)
                    if is_zero(d):
                        continue
                    f = fem.Function(self.V0)
                    exprs.append((self.compile_expression(d, pts), f))
                    dS[comp] = f
                taxis_terms.append(TaxisTerm(m, Sf, dS))
            Df = fem.Function(self.V0)
            if k in self.diffusion_exprs:
                exprs.append((self.compile_expression(self.diffusion_exprs[k], pts), Df))
            self.edge_taxis.append(EdgeTaxis(self.graph, k, taxis_terms, Df, exprs))

    def _setup_observables(self) -> None:
        dx = ufl.dx(domain=self.domain.mesh)
        self.total_forms = [fem.form(self.weighted(self.comp(self.u, k)) * dx)
                            for k in range(self.n)]
        #: name -> (kind, compiled form/expression or Radius, denominator or work function)
        self._observables: dict[str, tuple[str, Any, Any]] = {}
        pts = self.V0.element.interpolation_points
        for name, ob in self.spec.observables.items():
            if ob.kind == "value":  # global: evaluated by tumorpde.time.coupling
                continue
            expr = self.lower(ob.expr, None, self.u)
            if ob.kind == "radius":
                from tumorpde.fem.radius import Radius

                self._observables[name] = ("radius", Radius(self, name, expr, ob.level,
                                                            ob.above), None)
            elif ob.kind == "integral":
                per = fem.form(self.weighted(self.lower(ob.per, None, self.u)) * dx) \
                    if ob.per else None
                self._observables[name] = ("integral", fem.form(self.weighted(expr) * dx), per)
            else:
                f = fem.Function(self.V0)
                self._observables[name] = (ob.kind, self.compile_expression(expr, pts), f)

    # ------------------------------------------------------------------ state
    def initial_expression(self) -> Any:
        """The initial conditions of every species as one UFL expression (a vector for several)."""
        spec = self.spec
        L, T = spec.length_unit, spec.time_unit
        comps = []
        for name in spec.names:
            s = spec.species[name]
            req = un.required_units("initial", L, T, s.unit) if spec.has_units else None
            comps.append(self._data_field(s) if s.initial_data is not None or
                         s.initial_image is not None else
                         self.lower(s.initial, req, None))
        return ufl.as_vector(comps) if self.n > 1 else comps[0]

    def _image_parameter(self, name: str, f: Any) -> None:
        """Set a parameter field read from an image (``image``, ``labels``) at the nodes."""
        p = self.spec.config.parameters[name]
        image = getattr(p, "image", None)
        if image is None:
            return
        from tumorpde.fem.datafields import image_on_nodes

        key = f"parameters.{name}.image"
        _, unit = un.parse_quantity(p.value, f"parameters.{name}.value", self.spec.has_units)
        factor = un.canonical(1.0, unit, self.spec.length_unit, self.spec.time_unit)[0] \
            if unit is not None else 1.0
        pts = self.V0.tabulate_dof_coordinates()
        values, inside = image_on_nodes(image, pts, self.domain.gdim, self.comm, key,
                                        order=0 if p.labels else 1)
        if p.labels:
            table = {int(k): v for k, v in p.labels.items()}
            fallback = self.spec.parameters[name][0] / factor  # value, as written
            values = np.array([table.get(int(round(v)), fallback) for v in values])
        f.x.array[inside] = values[inside] * factor

    def _data_field(self, s: Any) -> Any:
        """The initial field of a species from data samples or an image (made once, kept)."""
        cache = self.__dict__.setdefault("_data_fields", {})
        if s.name not in cache and s.initial_image is not None:
            from tumorpde.fem.datafields import image_on_nodes

            path, scale = s.initial_image
            f = fem.Function(self.V0, name=f"{s.name}_image")
            values, _ = image_on_nodes(path, self.V0.tabulate_dof_coordinates(),
                                       self.domain.gdim, self.comm,
                                       f"species.{s.name}.initial.image")
            f.x.array[:] = scale * values
            cache[s.name] = f
        if s.name not in cache:
            from tumorpde.fem.datafields import interpolator, samples_at

            path, t0 = s.initial_data
            key = f"species.{s.name}.initial.data"
            tc = self.spec.config.time
            pts, vals = samples_at(path, s.name, t0, self.domain.gdim, key,
                                   1e-9 * max(tc.end - tc.start, abs(t0), 1e-300))
            f = fem.Function(self.V0, name=f"{s.name}_data")
            f.interpolate(interpolator(pts, vals, key))
            f.x.scatter_forward()
            cache[s.name] = f
        return cache[s.name]

    def set_initial(self) -> None:
        """Interpolate the initial conditions into ``u`` and the history."""
        spec = self.spec
        expr = self.compile_expression(self.initial_expression(),
                                       self.V.element.interpolation_points)
        self.u.interpolate(expr)
        self.u.x.scatter_forward()
        finite = np.isfinite(self.u.x.array.reshape(-1, self.n)).all(axis=0).astype(np.int32)
        everywhere = np.empty_like(finite)
        self.comm.Allreduce(finite, everywhere, op=MPI.MIN)
        for name in spec.names:
            if not everywhere[spec.species[name].index]:
                raise ConfigError(f"species.{name}.initial", "is not finite somewhere")
        self.u_n.x.array[:] = self.u.x.array
        self.u_nm1.x.array[:] = self.u.x.array
        self.check_diffusion()

    def check_diffusion(self) -> None:
        """Fail (collectively) if a diffusion coefficient is negative at a node."""
        pts = self.V0.element.interpolation_points
        f = fem.Function(self.V0)
        for name in self.spec.names:
            k = self.spec.species[name].index
            if k not in self.diffusion_exprs:
                continue
            f.interpolate(self.compile_expression(self.diffusion_exprs[k], pts))
            arr = f.x.array
            finite = self.comm.allreduce(bool(np.all(np.isfinite(arr))), op=MPI.LAND)
            if not finite:
                raise ConfigError(f"species.{name}.diffusion", "is not finite somewhere")
            local = float(arr.min()) if arr.size else math.inf
            gmin = self.comm.allreduce(local, op=MPI.MIN)
            if gmin < 0:
                raise ConfigError(f"species.{name}.diffusion",
                                  f"is negative somewhere (minimum {gmin:.3g})")

    def update_boundary_values(self) -> None:
        """Re-interpolate time-dependent Dirichlet values at the current ``t``."""
        for b in self.bcs:
            b.func.interpolate(b.expr)
            b.func.x.scatter_forward()

    def apply_bcs(self, x: PETSc.Vec) -> None:
        """Set Dirichlet values in a solution vector."""
        if self.bcs:
            fpetsc.set_bc(x, [b.bc for b in self.bcs])

    # ------------------------------------------------------------------ assembly
    def residual(self, snes: Any, x: PETSc.Vec, b: PETSc.Vec) -> None:
        """SNES residual callback."""
        x.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        x.copy(self.u.x.petsc_vec)
        self.u.x.scatter_forward()
        with b.localForm() as bl:
            bl.set(0.0)
        fpetsc.assemble_vector(b, self.F)
        if self.edge_taxis:
            arr = self.u.x.array
            with b.localForm() as bl:
                barr = bl.array_w
                for et in self.edge_taxis:
                    et.update()
                    et.add_residual(arr, barr, self.n)
        b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        if self.bcs:
            fpetsc.set_bc(b, [bc.bc for bc in self.bcs], x0=x, alpha=-1.0)
        b.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)

    def jacobian(self, snes: Any, x: PETSc.Vec, J: PETSc.Mat, P: PETSc.Mat) -> None:
        """SNES Jacobian callback."""
        x.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        x.copy(self.u.x.petsc_vec)
        self.u.x.scatter_forward()
        J.zeroEntries()
        fpetsc.assemble_matrix(J, self.J, [bc.bc for bc in self.bcs], diag=1.0)
        if self.edge_taxis:
            J.assemblyBegin(PETSc.Mat.AssemblyType.FLUSH)
            J.assemblyEnd(PETSc.Mat.AssemblyType.FLUSH)
            arr = self.u.x.array
            ncols = J.getSize()[1]
            rows, cols, vals = [], [], []
            for et in self.edge_taxis:
                et.update()
                r, c, v = et.jacobian_entries(arr, self.n)
                rows.append(r)
                cols.append(c)
                vals.append(v)
            add_entries(J, np.concatenate(rows), np.concatenate(cols), np.concatenate(vals),
                        self.bc_global, ncols)
        J.assemble()

    def create_matrix(self) -> PETSc.Mat:
        """A matrix with the Jacobian's layout."""
        return fpetsc.create_matrix(self.J)

    def lumped_mass(self) -> np.ndarray:
        """The lumped P1 mass ``m_i = int phi_i`` of the owned nodes (assembled once; read only)."""
        if self.__dict__.get("_node_mass") is None:
            meta = {"quadrature_rule": "vertex", "quadrature_degree": 1}
            w = fem.Function(self.V0)
            fem.assemble_vector(w.x.array, fem.form(ufl.TestFunction(self.V0) * ufl.dx(
                domain=self.domain.mesh, metadata=meta)))
            w.x.scatter_reverse(_ADD)
            self.__dict__["_node_mass"] = w.x.array[: self.V0.dofmap.index_map.size_local].copy()
        return self.__dict__["_node_mass"]

    # ------------------------------------------------------------------ observables
    def totals(self) -> list[float]:
        """MPI-reduced integral of every species.

        For P1 the integral of a nodal function is exactly ``sum_i m_i u_i`` with the lumped
        mass ``m_i = int phi_i`` (assembled once): one dot product instead of an assembly
        per species.
        """
        if self.degree == 1:
            m = self.volume_mass()
            u = self.u.x.array[: len(m) * self.n].reshape(len(m), self.n)
            vals = m @ u
        else:
            vals = np.array([fem.assemble_scalar(f) for f in self.total_forms], dtype=float)
        out = np.empty_like(vals)
        self.comm.Allreduce(vals, out, op=MPI.SUM)
        return [float(v) for v in out]

    def observables(self) -> dict[str, float]:
        """MPI-reduced user observables (instantaneous values; see ``Observable``)."""
        out = {}
        nown = self.V0.dofmap.index_map.size_local
        for name, (kind, a, b) in self._observables.items():
            if kind == "integral":
                val = self.comm.allreduce(fem.assemble_scalar(a), op=MPI.SUM)
                if b is not None:
                    den = self.comm.allreduce(fem.assemble_scalar(b), op=MPI.SUM)
                    val = val / den if den != 0 else 0.0
            elif kind == "radius":
                val = a.value()
            else:
                b.interpolate(a)
                arr = b.x.array[:nown]
                if kind == "maximum":
                    local = float(arr.max()) if arr.size else -math.inf
                    val = self.comm.allreduce(local, op=MPI.MAX)
                else:
                    local = float(arr.min()) if arr.size else math.inf
                    val = self.comm.allreduce(local, op=MPI.MIN)
            out[name] = float(val)
        return out

    def minima(self) -> list[float]:
        """Global minimum of every species' degrees of freedom."""
        arr = self.u.x.array.reshape(-1, self.n)
        nown = self.V.dofmap.index_map.size_local
        loc = arr[:nown].min(axis=0) if nown else np.full(self.n, np.inf)
        out = np.empty_like(loc)
        self.comm.Allreduce(np.ascontiguousarray(loc), out, op=MPI.MIN)
        return [float(v) for v in out]


def component_derivative(expr: Any, u: Any, comp: int, n: int) -> Any:
    """D expr / d u[comp] as a UFL expression."""
    if isinstance(expr, int | float):
        return 0.0
    e = ufl.as_vector([1.0 if i == comp else 0.0 for i in range(n)]) if n > 1 else \
        ufl.as_ufl(1.0)
    d = ufl.derivative(expr, u, e)
    return ufl.algorithms.expand_derivatives(d)


def is_zero(expr: Any) -> bool:
    from ufl.constantvalue import Zero

    return isinstance(expr, Zero) or (isinstance(expr, int | float) and expr == 0)

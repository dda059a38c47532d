"""Calibration: data files, observation operators, the discrete adjoint and tangent, fits.

The model is the bundled Keller-Segel example (two species, edge-upwind taxis) on a
coarse mesh with a parameter ``a0`` in an initial condition, so that every path of the
derivative (UFL terms, edge fluxes, initial conditions) is exercised.  Runs serially and
under ``mpiexec -n 2``.
"""

from __future__ import annotations

from pathlib import Path

from mpi4py import MPI

import numpy as np
import pytest

import tumorpde as tp
from tumorpde.calibration.fit import FitParameter, calibrate, covariance, information_criteria
from tumorpde.calibration.objective import Objective
from tumorpde.errors import ConfigError
from tumorpde.io.data import Data, read_data

KS = ["mesh.cells=[8, 8]", "time.end=0.02", "time.dt=0.002", "output.progress=false",
      "solver.snes_rtol=1e-12", "solver.snes_atol=1e-14", "parameters.a0=0.5",
      'species.chemokine.initial="a0*exp(-20*((x-0.3)**2+(y-0.6)**2))"']
OBS = ['observables.near.integral="cells*chemokine"',
       'observables.share.integral="where(x < 0.5, cells, 0)"', 'observables.share.per="cells"']


def ks(*extra: str, comm: MPI.Comm = MPI.COMM_WORLD) -> tp.Problem:
    return tp.Problem(tp.load("keller-segel", [*KS, *OBS, *extra]), comm)


def field_data(times=(0.01, 0.02), npts=6, seed=3) -> Data:
    """Field samples at random points (values to be filled in)."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0.05, 0.95, size=(npts, 2))
    rows = [(t, f, p) for t in times for f in ("cells", "chemokine") for p in pts]
    n = len(rows)
    return Data(Path("synthetic-fields"), "field", ["t", "x", "y", "field", "value"],
                [[repr(t), repr(p[0]), repr(p[1]), f, "0"] for t, f, p in rows],
                np.array([r[0] for r in rows]), [r[1] for r in rows], np.zeros(n), np.ones(n),
                np.array([r[2] for r in rows]), np.arange(2, n + 2))


def observable_data(times=(0.005, 0.015, 0.02)) -> Data:
    names = ["total_cells", "near", "share", "total_chemokine"]
    rows = [(t, o) for t in times for o in names]
    n = len(rows)
    return Data(Path("synthetic-observables"), "observable", ["t", "observable", "value"],
                [[repr(t), o, "0"] for t, o in rows], np.array([r[0] for r in rows]),
                [r[1] for r in rows], np.zeros(n), np.ones(n), np.zeros((n, 0)),
                np.arange(2, n + 2))


def synthetic(problem: tp.Problem, data: list[Data], names: list[str], noise: float = 0.0,
              seed: int = 0) -> None:
    """Fill ``data`` with the model's values at the config's parameters (times 1 + noise)."""
    obj = Objective(problem, data, names)
    model = obj.evaluate(obj.start()).model
    rng = np.random.default_rng(seed)
    pert = model * (1 + noise * rng.standard_normal(model.size))
    for d, a, b in zip(data, obj.offsets[:-1], obj.offsets[1:], strict=True):
        d.value[:] = pert[a:b]
        if noise:
            d.sigma[:] = noise * np.abs(model[a:b])
            d.columns.append("sigma")
    obj.destroy()


PARAMS = ["chi", "alpha", "Du", "a0"]


@pytest.fixture(scope="module")
def misfit():
    """An objective with data 10 % away from the model, and its gradient at the start."""
    problem = ks()
    data = [field_data(), observable_data()]
    synthetic(problem, data, PARAMS)
    for d in data:
        d.value *= 1 + 0.1 * np.cos(np.arange(len(d)))
    obj = Objective(problem, data, PARAMS)
    p0 = obj.start()
    yield obj, p0, obj.gradient(p0)
    obj.destroy()
    problem.destroy()


def test_reset_reruns_exactly_like_a_fresh_problem():
    p = ks()
    first = p.solve().observables
    p.reset({"chi": 0.8}, times=[0.0123])
    changed = p.solve().observables
    assert 0.0123 in [round(t, 10) for t in changed["t"]]
    assert changed["near"][-1] != first["near"][-1]
    p.reset({"chi": 0.5})
    again = p.solve().observables
    for col in first:
        np.testing.assert_array_equal(again[col], first[col])
    with pytest.raises(ConfigError, match="is not a parameter"):
        p.reset({"nope": 1.0})
    p.destroy()


def test_the_adjoint_gradient_equals_central_differences(misfit):
    obj, p0, g = misfit
    for j, name in enumerate(PARAMS):
        # h^2 truncation ~1e-8; smaller steps meet the noise of the nonlinear solves
        h = 1e-4 * abs(p0[j])
        e = np.zeros_like(p0)
        e[j] = h
        fd = (obj(p0 + e) - obj(p0 - e)) / (2 * h)
        assert abs(g[j] - fd) <= 1e-6 * abs(fd), (name, g[j], fd)


def test_the_taylor_remainder_is_second_order(misfit):
    obj, p0, g = misfit
    rng = np.random.default_rng(7)
    dp = rng.standard_normal(p0.size) * p0 * 0.1
    J0 = obj(p0)
    eps = [0.08 / 2 ** k for k in range(4)]
    rem = [abs(obj(p0 + e * dp) - J0 - e * float(g @ dp)) for e in eps]
    rates = [np.log2(rem[k] / rem[k + 1]) for k in range(3)]
    assert all(abs(r - 2.0) < 0.05 for r in rates), rates
    # without the gradient the remainder is first order: the test can fail
    first = [abs(obj(p0 + e * dp) - J0) for e in eps[:2]]
    assert abs(np.log2(first[0] / first[1]) - 1.0) < 0.1


def test_the_tangent_jacobian_agrees_with_the_adjoint(misfit):
    obj, p0, g = misfit
    ev = obj.evaluate(p0)
    jac = obj.jacobian(p0)
    np.testing.assert_allclose(jac.T @ ev.residuals, g, rtol=1e-9, atol=1e-14 * np.abs(g).max())


def test_noise_free_data_give_back_the_parameters():
    truth = ks()
    data = [field_data(times=(0.01, 0.02), npts=10)]
    synthetic(truth, data, ["chi", "alpha"])
    truth.destroy()
    start = ks("parameters.chi=0.3", "parameters.alpha=6")
    fit = calibrate(start, data, [FitParameter("chi", "chi", 0.05, 2.0),
                                  FitParameter("parameters.alpha", "alpha", 1.0, 30.0)], starts=1)
    assert fit.status == "converged"
    np.testing.assert_allclose(fit.estimate, [0.5, 10.0], rtol=1e-4)
    assert fit.objective < 1e-12
    start.destroy()


def test_noisy_data_give_intervals_that_hold_the_truth():
    truth = ks("time.end=0.05", "time.dt=0.0025")
    data = [field_data(times=(0.01, 0.02, 0.03, 0.04, 0.05), npts=15, seed=5)]
    synthetic(truth, data, ["chi", "alpha"], noise=0.05, seed=2)
    truth.destroy()
    start = ks("time.end=0.05", "time.dt=0.0025", "parameters.chi=0.3", "parameters.alpha=6")
    fit = calibrate(start, data, [FitParameter("chi", "chi", 0.05, 2.0),
                                  FitParameter("alpha", "alpha", 1.0, 30.0)], starts=2,
                    profile=9)
    assert fit.status == "converged"
    assert fit.noise["model"] == "given"
    # profile likelihoods: minimal at the estimate, 95 % intervals near the Wald ones
    for key, est, (lo, hi) in zip(("chi", "alpha"), fit.estimate, fit.ci95, strict=True):
        prof = fit.profiles[key]
        assert min(v for v in prof["profile"] if v is not None) > -1e-6
        plo, phi = prof["ci95"]
        assert plo is not None and phi is not None and plo < est < phi
        assert abs((phi - plo) / (hi - lo) - 1) < 0.3
    for true, (lo, hi), s in zip([0.5, 10.0], fit.ci95, fit.std, strict=True):
        assert lo <= true <= hi and 0 < s < 0.5 * true
    assert np.isfinite([fit.aic, fit.bic]).all() and fit.bic > fit.aic
    assert len(fit.starts) == 2
    start.destroy()


def test_information_criteria_count_an_estimated_noise():
    aic_known, bic_known = information_criteria(10.0, 20, 2, np.ones(20))
    assert aic_known == pytest.approx(4 + 10 + 20 * np.log(2 * np.pi))
    aic_est, _ = information_criteria(10.0, 20, 2, None)
    assert aic_est == pytest.approx(6 + 20 * np.log(2 * np.pi * 0.5) + 20)
    assert bic_known == pytest.approx(2 * np.log(20) + 10 + 20 * np.log(2 * np.pi))


# ----------------------------------------------------------------------------- bad input
BAD = {
    "t,x,field\n0,0.5,cells\n": "misses the column",
    "t,x,y,value\n0,0.5,0.5,1\n": "needs exactly one of the columns",
    "t,x,y,field,value\n0,0.5,0.5,cells,nan\n": "not a finite number",
    "t,x,y,field,value\n0,0.5,0.5,cells,abc\n": "not a number",
    "t,x,y,field,value,sigma\n0,0.5,0.5,cells,1,0\n": "sigma must be positive",
    "t,x,y,field,value\n0,0.5,0.5,cells\n": "4 values for 5 columns",
    "t,x,y,field,value\n": "has a header but no rows",
    "": "is empty",
}


@pytest.mark.serial
@pytest.mark.parametrize("text", list(BAD), ids=list(BAD.values()))
def test_bad_data_files_are_refused_with_one_line(tmp_path, text):
    f = tmp_path / "data.csv"
    f.write_text(text)
    with pytest.raises(ConfigError, match=BAD[text]) as exc:
        read_data(f)
    assert str(f) in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("text, message", [
    ("t,x,y,field,value\n0.01,0.5,0.5,tumour,1\n", "unknown field"),
    ("t,observable,value\n0.01,total_tumour,1\n", "unknown observable"),
    ("t,x,y,field,value\n0.01,1.5,0.5,cells,1\n", "outside the mesh"),
    ("t,x,field,value\n0.01,0.5,cells,1\n", "the mesh is 2-D"),
    ("t,x,y,field,value\n0.5,0.5,0.5,cells,1\n", "outside the run's time interval"),
])
def test_data_that_do_not_fit_the_model_are_refused(mpi_tmp, text, message):
    f = mpi_tmp / "data.csv"
    if MPI.COMM_WORLD.rank == 0:
        f.write_text(text)
    MPI.COMM_WORLD.Barrier()
    p = ks()
    with pytest.raises(ConfigError, match=message):
        Objective(p, [read_data(f)], ["chi"])
    p.destroy()


def test_parameters_in_dirichlet_values_are_refused():
    p = ks("species.chemokine.boundary.left.value=\"a0\"")
    data = [field_data()]
    with pytest.raises(ConfigError, match="Dirichlet"):
        Objective(p, data, ["a0"]).gradient([0.5])
    p.destroy()


# ----------------------------------------------------------------------------- parameter fields
def field_problem(comm: MPI.Comm = MPI.COMM_WORLD) -> tp.Problem:
    """Keller-Segel with the chemokine production rate ``alpha`` a field (field = true)."""
    return tp.Problem(tp.load("keller-segel", [*KS, *OBS, "parameters.alpha={value=10.0, field=true}"]),
                      comm)


def field_objective(problem: tp.Problem) -> Objective:
    data = [field_data(), observable_data()]
    synthetic(problem, data, ["chi"])
    for d in data:
        d.value *= 1 + 0.1 * np.cos(np.arange(len(d)))
    return Objective(problem, data, ["chi"], fields=["alpha"], regularisation={"alpha": 1e-3})


def nodal(obj: Objective, f) -> np.ndarray:
    """A function of the coordinates at every node, in the field's global numbering."""
    V0 = obj.problem.disc.V0
    xyz = V0.tabulate_dof_coordinates()
    return obj.layout.gather(f(xyz[:, 0], xyz[:, 1]))


def test_a_parameter_field_is_a_function_that_reset_sets():
    p = field_problem()
    f = p.parameter_fields["alpha"]
    np.testing.assert_allclose(f.x.array, 10.0)
    first = p.solve().observables["total_chemokine"][-1]
    xyz = f.function_space.tabulate_dof_coordinates()
    p.reset({"alpha": 10.0 * (1 + xyz[:, 0])})
    assert p.solve().observables["total_chemokine"][-1] > 1.3 * first
    with pytest.raises(ConfigError, match="a field takes a number or"):
        p.reset({"alpha": np.ones(3)})
    with pytest.raises(ConfigError, match="alpha"):  # not usable where numbers are needed
        tp.Problem(tp.load("keller-segel", [*KS, "parameters.alpha={value=10.0, field=true}",
                                            'observables.a.value="alpha"']))
    p.destroy()


def test_the_taylor_remainder_is_second_order_for_a_parameter_field():
    problem = field_problem()
    obj = field_objective(problem)
    p0 = obj.start()
    g = obj.gradient(p0)
    assert g.size == 1 + obj.layout.size
    # a smooth and a rough direction, scalar and field together
    for wave in (lambda x, y: np.sin(3 * x) * np.cos(2 * y), lambda x, y: np.cos(17 * x * y)):
        dp = np.concatenate([[0.05], 3.0 * nodal(obj, wave)])
        J0 = obj(p0)
        eps = [0.2 / 2 ** k for k in range(4)]
        rem = [abs(obj(p0 + e * dp) - J0 - e * float(g @ dp)) for e in eps]
        rates = [np.log2(rem[k] / rem[k + 1]) for k in range(3)]
        assert all(abs(r - 2.0) < 0.05 for r in rates), rates
    obj.destroy()
    problem.destroy()


def test_a_field_gradient_is_the_same_on_one_rank_and_on_all(comm):
    """Directional derivatives along coordinate-defined directions (numbering-free)."""
    values = []
    for c in (MPI.COMM_SELF, comm):
        problem = field_problem(c)
        obj = field_objective(problem)
        p0 = obj.start()
        g = obj.gradient(p0)
        d = nodal(obj, lambda x, y: np.exp(-((x - 0.4) ** 2 + (y - 0.6) ** 2) / 0.05))
        values.append((g[0], float(g[1:] @ d), float(g[1:].sum()), obj(p0)))
        obj.destroy()
        problem.destroy()
    np.testing.assert_allclose(values[1], values[0], rtol=1e-9)


def test_a_parameter_field_is_recovered_from_noise_free_data():
    truth = field_problem()
    xyz = truth.parameter_fields["alpha"].function_space.tabulate_dof_coordinates()
    exact = 10.0 * (1 + 0.5 * xyz[:, 0])
    data = [field_data(times=(0.01, 0.02), npts=30, seed=8)]
    data[0] = data[0].select(np.array([n == "chemokine" for n in data[0].name]))
    obj = Objective(truth, data, [], fields=["alpha"])
    model = obj.evaluate(obj.layout.gather(exact)).model
    data[0].value[:] = model
    obj.destroy()
    truth.destroy()
    start = field_problem()
    fit = calibrate(start, data, [FitParameter("alpha", "alpha", 1.0, 40.0)],
                    regularisation={"alpha": 1e-7})
    assert fit.status == "converged" and fit.objective < 1e-5  # penalty of the truth: 1.25e-6
    est = start.parameter_fields["alpha"].x.array  # the problem is left at the estimate
    owned = start.disc.V0.dofmap.index_map.size_local
    err = np.abs(est[:owned] - exact[:owned]) / exact[:owned]
    # the mean is pinned well; nodes far from every sample are set by the regulariser
    assert abs(fit.estimate[0] - 12.5) < 0.1
    assert MPI.COMM_WORLD.allreduce(float(np.median(err)) if owned else 0.0, op=MPI.MAX) < 0.05
    start.destroy()


def test_the_gradient_is_the_same_with_the_split_solver(misfit):
    """The adjoint differentiates the discrete equations, whichever solver solved them."""
    obj, p0, g = misfit
    problem = ks('solver.strategy="split"')
    assert problem.solver.strategy == "split"
    data = [field_data(), observable_data()]
    for d, ref in zip(data, obj.data, strict=True):
        d.value[:] = ref.value
    other = Objective(problem, data, PARAMS)
    np.testing.assert_allclose(other.gradient(p0), g, rtol=1e-7)
    other.destroy()
    problem.destroy()


def test_a_failed_run_is_an_infeasible_point_not_a_crash(monkeypatch):
    """Runs that fail during the search (here: every run with chi > 0.6) are rejected."""
    truth = ks()
    data = [field_data(times=(0.01, 0.02), npts=10)]
    synthetic(truth, data, ["chi"])
    truth.destroy()
    start = ks("parameters.chi=0.3")
    real = Objective.evaluate
    failed = []

    def evaluate(self, p):
        if p[0] > 0.6:
            failed.append(float(p[0]))
            from tumorpde.calibration.objective import Evaluation

            nan = np.full(self.n_data, np.nan)
            return Evaluation(np.asarray(p, float), False, nan, nan, "diverged (test)")
        return real(self, p)

    monkeypatch.setattr(Objective, "evaluate", evaluate)
    fit = calibrate(start, data, [FitParameter("chi", "chi", 0.05, 2.0)], starts=3, seed=1)
    assert failed, "the search never tried a failing point"
    assert fit.status == "converged"
    np.testing.assert_allclose(fit.estimate, [0.5], rtol=1e-4)
    bad = [s for s in fit.starts if s["objective"] is None]
    assert bad and all("failed" in s["status"] for s in bad)  # a start in the failing region
    start.destroy()


def test_the_covariance_of_parameters_of_very_different_magnitudes_is_exact():
    """A rate near 0.2 and an uptake near 1e7 in one fit: ``J^T J`` is ill-conditioned by
    units alone (cond ~ 1e18 here), yet the covariance is that of the rescaled problem."""
    rng = np.random.default_rng(4)
    base = rng.standard_normal((40, 3))
    scale = np.array([1.0, 1e-7, 1e3])  # d r / d p for p of magnitude 1, 1e7, 1e-3
    jac = base * scale
    cov, s2 = covariance(jac, rss=2.0, n=40, sigma_given=True)
    exact = np.linalg.inv(base.T @ base) / np.outer(scale, scale)
    np.testing.assert_allclose(cov, exact, rtol=1e-8)
    assert s2 == 1.0

"""Engine features for therapies and global coupling: drug plasma levels (exact exposure,
dose milestones), radiotherapy fractions, scalar compartments coupled through integrals,
value observables, meshes split by ``mesh.remove`` and definitions in any order."""

from __future__ import annotations

import copy
import math

from mpi4py import MPI

import numpy as np
import pytest
from helpers import run_dict
from scipy.integrate import quad

from tumorpde.errors import ConfigError
from tumorpde.io.rundir import read
from tumorpde.model.config import check, load_dict


def interval(**extra) -> dict:
    """A 1D model with units, 10 cells on [0, 1] mm."""
    data = {"units": {"length": "mm", "time": "day"},
            "mesh": {"shape": "interval", "size": [1.0], "cells": [10]},
            "time": {"end": 3.0, "dt": 0.7, "scheme": "backward-euler"},
            "species": {"u": {"initial": 1.0}}}
    for k, v in extra.items():
        data[k] = copy.deepcopy(v)
    return data


DRUGS = {"pill": {"half_life": "6 hour", "dose": 2.0, "every": "1 day", "doses": 3},
         "beam": {"kind": "fraction", "dose": 2.0,
                  "survival": {"u": "exp(-0.3*beam - 0.03*beam**2)"}}}


def test_plasma_level_is_the_one_compartment_solution():
    spec = check(load_dict(interval(drugs=DRUGS, therapy=[
        {"drug": "pill", "start": 0.25},                       # the drug's regimen
        {"drug": "pill", "start": "36 hour", "doses": 1, "dose": 1.0}])))
    plan = spec.plan
    k = math.log(2) / 0.25
    doses = [(0.25, 2.0), (1.25, 2.0), (1.5, 1.0), (2.25, 2.0)]
    np.testing.assert_allclose(plan.drugs["pill"].times, [d[0] for d in doses])

    def exact(t: float) -> float:
        return sum(a * math.exp(-k * (t - s)) for s, a in doses if s <= t)

    for t in (0.0, 0.25, 0.3, 1.4, 1.5, 2.9):
        assert plan.level("pill", t) == pytest.approx(exact(t), rel=1e-14)
    # the step mean is the exact exposure, also across doses and for steps >> half-life
    for t0, t1 in ((0.0, 0.2), (0.1, 0.9), (0.25, 2.7), (1.3, 1.31)):
        inside = [s for s, _ in doses if t0 < s < t1]
        auc, _ = quad(exact, t0, t1, points=inside or None, epsabs=1e-14, epsrel=1e-12,
                      limit=200)
        assert plan.mean_level("pill", t0, t1) * (t1 - t0) == pytest.approx(auc, rel=1e-10)
    assert plan.dose_times(0.0, 3.0) == [0.25, 1.25, 1.5, 2.25]
    assert plan.fractions(0.0, 3.0, 1e-9) == []


def test_a_cycle_repeats_the_doses_until_the_end_or_a_number_of_cycles():
    drugs = {**DRUGS, "inhibitor": {"half_life": "1 day", "every": "1 day", "doses": 3,
                                    "cycle": "7 day"}}
    data = interval(drugs=drugs, therapy=[{"drug": "inhibitor", "start": 1}])
    data["time"]["end"] = 20.0
    plan = check(load_dict(data)).plan
    # 3 doses a day apart, every 7 days from day 1, while a cycle starts by day 20
    np.testing.assert_allclose(plan.drugs["inhibitor"].times,
                               [1, 2, 3, 8, 9, 10, 15, 16, 17])
    # a therapy's own cycle and number of cycles; cycles = 1 is one course
    data["therapy"] = [{"drug": "inhibitor", "start": 0, "cycles": 2},
                       {"drug": "pill", "start": 0.5, "doses": 2, "cycle": "10 day",
                        "cycles": 2}]
    plan = check(load_dict(data)).plan
    np.testing.assert_allclose(plan.drugs["inhibitor"].times, [0, 1, 2, 7, 8, 9])
    np.testing.assert_allclose(plan.drugs["pill"].times, [0.5, 1.5, 10.5, 11.5])
    data["therapy"] = [{"drug": "inhibitor", "start": 0, "cycles": 1}]
    np.testing.assert_allclose(check(load_dict(data)).plan.drugs["inhibitor"].times, [0, 1, 2])
    # a cycle that starts exactly at the end still counts (its first dose is a milestone)
    data["therapy"] = [{"drug": "inhibitor", "start": 6}]
    np.testing.assert_allclose(check(load_dict(data)).plan.drugs["inhibitor"].times,
                               [6, 7, 8, 13, 14, 15, 20, 21, 22])


@pytest.mark.parametrize("therapy,drug,key,words", [
    ({"cycle": 2}, {}, "therapy[0].cycle", "not longer than its 3 doses"),
    ({"cycles": 2}, {}, "therapy[0].cycles", "need a cycle length"),
    ({"cycle": -1}, {}, "therapy[0].cycle", "positive"),
    ({"cycle": "1 mm"}, {}, "therapy[0].cycle", "not a time"),
    ({"cycle": 7, "cycles": 0}, {}, "therapy[0].cycles", "positive"),
    ({}, {"cycles": 2}, "drugs.pill.cycles", "cycle length"),
    ({"cycle": 1e-3, "doses": 1, "start": 0}, {}, "therapy[0].cycles", "doses in all"),
])
def test_bad_cycles_name_the_key(therapy, drug, key, words):
    drugs = {**DRUGS, "pill": {**DRUGS["pill"], **drug}}
    data = interval(drugs=drugs, therapy=[{"drug": "pill", "start": 1, **therapy}])
    data["time"]["end"] = 200.0
    with pytest.raises(ConfigError) as err:
        check(load_dict(data))
    assert err.value.key == key, str(err.value)
    assert words in str(err.value)


def test_drug_exposure_is_exact_whatever_the_step(mpi_tmp):
    # w' = pill: backward Euler with the step-mean level integrates the level exactly,
    # although the half-life (6 h) is much shorter than the step (0.7 day)
    data = interval(drugs=DRUGS, therapy=[{"drug": "pill", "start": 0.25}])
    data["species"]["w"] = {"reaction": "pill"}
    data["time"]["output_every"] = 1.0
    run_dict(data, mpi_tmp / "run")
    obs = read(mpi_tmp / "run").observables if MPI.COMM_WORLD.rank == 0 else None
    obs = MPI.COMM_WORLD.bcast(obs, root=0)
    k = math.log(2) / 0.25
    auc = sum(2.0 / k * (1 - math.exp(-k * (3.0 - s))) for s in (0.25, 1.25, 2.25))
    assert obs["total_w"][-1] == pytest.approx(auc, rel=1e-12)
    for s in (0.25, 1.25, 2.25):  # dose times are milestones
        assert np.any(np.abs(obs["t"] - s) < 1e-12), s


def test_fractions_multiply_species_by_their_surviving_fraction(mpi_tmp):
    data = interval(drugs=DRUGS, therapy=[{"drug": "beam", "start": 0.0, "every": 1.1,
                                           "doses": 2}])
    data["time"]["scheme"] = "bdf2"
    data["parameters"] = {"ell": "1 mm"}
    data["species"]["u"]["initial"] = "1 + x/ell"
    data["species"]["o"] = {"initial": "x/ell"}
    # oxygen-like modifier: the surviving fraction depends on another field
    data["drugs"]["beam"]["survival"] = {"u": "exp(-0.3*beam*(1 + o))"}
    res = run_dict(data, mpi_tmp / "run")
    disc = res.discretisation
    x = disc.V0.tabulate_dof_coordinates()[:, 0]
    u = disc.u.x.array[0::disc.n]
    np.testing.assert_allclose(u, (1 + x) * np.exp(-0.6 * (1 + x)) ** 2, rtol=1e-12)
    obs = MPI.COMM_WORLD.bcast(read(mpi_tmp / "run").observables
                               if MPI.COMM_WORLD.rank == 0 else None, root=0)
    # two rows at each fraction time: before and after the jump
    assert list(obs["t"][:2]) == [0.0, 0.0]
    assert obs["total_u"][0] == pytest.approx(1.5) and obs["total_u"][1] < 1.5
    at = np.flatnonzero(np.abs(obs["t"] - 1.1) < 1e-12)
    assert len(at) == 2 and obs["total_u"][at[1]] < obs["total_u"][at[0]]
    assert obs["total_u"][at[0]] == pytest.approx(obs["total_u"][1], rel=1e-12)


def test_a_fraction_aimed_at_a_region_spares_the_rest_of_the_mesh(mpi_tmp):
    # the beam's default target is the region near (cells with midpoints x < 0.5: the nodes
    # x <= 0.5);
    # a second therapy asks for the whole mesh; a third aims at the region `far`
    drugs = {**DRUGS, "beam": {**DRUGS["beam"], "region": "near"}}
    data = interval(drugs=drugs, therapy=[
        {"drug": "beam", "start": 0.0},
        {"drug": "beam", "start": 1.0, "region": "all"},
        {"drug": "beam", "start": 2.0, "dose": 4.0, "region": "far"}])
    data["mesh"]["regions"] = {"near": "x < 0.5", "far": "x > 0.7"}
    res = run_dict(data, mpi_tmp / "run")
    plan = res.discretisation.spec.plan
    assert plan.drugs["beam"].regions == ["near", None, "far"]
    disc = res.discretisation
    x = disc.V0.tabulate_dof_coordinates()[:, 0]
    u = disc.u.x.array
    s2, s4 = math.exp(-0.6 - 0.12), math.exp(-1.2 - 0.48)
    expect = s2 * np.where(x < 0.5 + 1e-12, s2, 1.0) * np.where(x > 0.7 - 1e-12, s4, 1.0)
    np.testing.assert_allclose(u, expect, rtol=1e-12)  # ghosts too: every rank alike
    # the exposure is the integral: total_u after the last fraction
    obs = MPI.COMM_WORLD.bcast(read(mpi_tmp / "run").observables
                               if MPI.COMM_WORLD.rank == 0 else None, root=0)
    exact = s2 * (0.5 * s2 + 0.1 * (s2 + 1) / 2 + 0.1 * (1 + s4) / 2 + 0.3 * s4)
    assert obs["total_u"][-1] == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("drug,therapy,key,words", [
    ({"beam": {"region": "lung"}}, {"drug": "beam"}, "drugs.beam.region", "unknown region 'lung'"),
    ({}, {"drug": "beam", "region": "lung"}, "therapy[0].region", "unknown region 'lung'"),
    ({}, {"drug": "pill", "region": "near"}, "therapy[0].region", "bolus drug"),
    ({"pill": {"region": "near"}}, {"drug": "beam"}, "drugs.pill.region", "bolus drug"),
    ({}, {"drug": "beam", "region": 3}, "therapy[0].region", "string"),
    ({}, {"drug": "beam", "region": ""}, "therapy[0].region", "name of a mesh region"),
])
def test_bad_therapy_regions_name_the_key(tmp_path, drug, therapy, key, words):
    drugs = {n: {**d, **drug.get(n, {})} for n, d in DRUGS.items()}
    data = interval(drugs=drugs, therapy=[{"start": 1.0, **therapy}])
    data["mesh"]["regions"] = {"near": "x < 0.45"}
    with pytest.raises(ConfigError) as err:
        run_dict(data, tmp_path / "run", MPI.COMM_SELF)
    assert err.value.key == key, str(err.value)
    assert words in str(err.value)


def test_fraction_at_the_start_restarts_the_adaptive_history(mpi_tmp):
    # a fraction at t = start is a jump before the first step: the adaptive run then takes
    # the same steps as a run that starts from the surviving fraction
    s = math.exp(-0.3 * 2.0 - 0.03 * 4.0)
    adaptive = {"end": 3.0, "dt": 0.05, "scheme": "bdf2", "adaptive": True, "rtol": 1e-4}
    data = interval(drugs=DRUGS, therapy=[{"drug": "beam", "start": 0.0, "doses": 1}])
    data["species"]["u"] |= {"reaction": "u*(1 - u)", "initial": 0.5}
    data["time"] = dict(adaptive)
    treated = run_dict(data, mpi_tmp / "treated")
    ref = interval()
    ref["species"]["u"] |= {"reaction": "u*(1 - u)", "initial": 0.5 * s}
    ref["time"] = dict(adaptive)
    started = run_dict(ref, mpi_tmp / "started")
    assert treated.steps == started.steps
    comm = MPI.COMM_WORLD
    a, b = (comm.bcast(read(mpi_tmp / d).observables if comm.rank == 0 else None,
                       root=0) for d in ("treated", "started"))
    np.testing.assert_allclose(a["total_u"][2:], b["total_u"][1:], rtol=1e-10)


def test_scalar_compartment_follows_the_implicit_scheme(mpi_tmp):
    # c' = I - kc with I = integral of u = 2 mm; v' = c sees c at the end of each step
    data = interval(scalars={"c": {"units": "mm", "reaction": "I_u - k*c", "initial": "c0"}},
                    parameters={"k": "3 1/day", "c0": "0.5 mm", "per_mm": "1 1/(mm*day)"},
                    observables={"I_u": "u", "twice_c": {"value": "2*c"}})
    data["species"]["u"]["initial"] = 2.0
    data["species"]["v"] = {"reaction": "c*per_mm"}
    data["time"].update(end=2.0, dt=0.25, output_every=0.5)
    run_dict(data, mpi_tmp / "run")
    obs = MPI.COMM_WORLD.bcast(read(mpi_tmp / "run").observables
                               if MPI.COMM_WORLD.rank == 0 else None, root=0)
    assert list(obs)[:5] == ["t", "total_u", "total_v", "c", "I_u"]
    c, v = [0.5], [0.0]
    for _ in range(8):
        c.append((c[-1] + 0.25 * 2.0) / (1 + 0.25 * 3.0))
        v.append(v[-1] + 0.25 * c[-1])
    np.testing.assert_allclose(obs["c"], c, rtol=1e-12)
    np.testing.assert_allclose(obs["total_v"], v, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(obs["twice_c"], 2 * np.asarray(c), rtol=1e-14)


def test_scalar_compartment_is_second_order_with_bdf2(mpi_tmp):
    # logistic nodal growth with a source: compare with the exact ODE solution
    errors = []
    for dt in (0.2, 0.1, 0.05):
        data = interval(scalars={"n": {"reaction": "r*n*(1 - n) + s*I_u", "initial": 0.1}},
                        parameters={"r": 1.0, "s": 0.0}, observables={"I_u": "u"})
        data["time"].update(end=2.0, dt=dt, scheme="bdf2", output_every=1.0)
        run_dict(data, mpi_tmp / f"run{dt}")
        obs = MPI.COMM_WORLD.bcast(read(mpi_tmp / f"run{dt}").observables
                                   if MPI.COMM_WORLD.rank == 0 else None, root=0)
        exact = 1 / (1 + 9 * math.exp(-2.0))
        errors.append(abs(obs["n"][-1] - exact))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 1.8), (errors, orders)


@pytest.mark.parametrize("extra, key, words", [
    ({"therapy": [{"drug": "nope", "start": 1}]}, "therapy[0].drug", "unknown drug"),
    ({"therapy": [{"drug": "pill"}]}, "therapy[0].start", "missing"),
    ({"therapy": [{"drug": "pill", "start": 1, "doses": 0}]}, "therapy[0].doses", "positive"),
    ({"therapy": [{"drug": "pill", "start": 1, "every": -1}]}, "therapy[0].every", "positive"),
    ({"therapy": [{"drug": "pill", "start": "1 mm"}]}, "therapy[0].start", "not a time"),
    ({"therapy": [{"drug": "pill", "start": 1, "when": 2}]}, "therapy[0].when", "unknown key"),
    ({"therapy": [{"drug": "beam", "start": 1, "doses": 2}]}, "therapy[0].every", "interval"),
    ({"therapy": "pill"}, "therapy", "array of tables"),
    ({"drugs": {"pill": {"dose": 1}}}, "drugs.pill.half_life", "missing"),
    ({"drugs": {"pill": {"half_life": "2 mm"}}}, "drugs.pill.half_life", "not a time"),
    ({"drugs": {"pill": {"half_life": 1, "doses": 3}}}, "drugs.pill.every", "interval"),
    ({"drugs": {"pill": {"half_life": 1, "kind": "pill"}}}, "drugs.pill.kind", "not one of"),
    ({"drugs": {"beam": {"kind": "fraction"}}}, "drugs.beam.survival", "missing"),
    ({"drugs": {"beam": {"kind": "fraction", "survival": {"w": "1"}}}},
     "drugs.beam.survival.w", "unknown species"),
    ({"drugs": {"beam": {"kind": "fraction", "survival": {"u": "x"}}}},
     "drugs.beam.survival.u", "units"),
    ({"drugs": {"u": {"half_life": 1}}}, "drugs.u", "reserved"),
    ({"scalars": {"c": {"reaction": "u"}}}, "scalars.c.reaction", "unknown symbol"),
    ({"scalars": {"c": {"reaction": "x"}}}, "scalars.c.reaction", "coordinates"),
    ({"scalars": {"c": {"reaction": "cum"}}}, "scalars.c.reaction", "cumulative"),
    ({"scalars": {"c": {"reaction": "tot", "units": "mm"}}}, "scalars.c.reaction", "units"),
    ({"scalars": {"c": {"reaction": "1", "units": "fathoms of joy"}}}, "scalars.c.units",
     "unknown unit"),
    ({"scalars": {"tot": {}}}, "observables.tot", "clashes"),
    ({"observables": {"val": {"value": "u"}}}, "observables.val.value", "unknown symbol"),
    ({"mesh": {"shape": "interval", "cells": [10], "remove": "x > -1"}}, "mesh.remove",
     "every cell"),
    ({"definitions": {"a": "b", "b": "2*a"}}, "definitions.a", "itself"),
])
def test_bad_therapy_and_scalar_input_names_the_key(extra, key, words):
    data = interval(drugs=dict(DRUGS), observables={"tot": "u", "cum": {"integral": "u",
                                                                         "cumulative": True}})
    for k, v in extra.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) and k in data and k != "mesh" else v
    with pytest.raises(ConfigError) as err:
        spec = check(load_dict(data))
        if "mesh" in extra:
            from tumorpde.fem.mesh import build_domain

            build_domain(spec.config.mesh, MPI.COMM_WORLD)
    assert err.value.key == key, str(err.value)
    assert words in str(err.value)


def test_definitions_may_use_later_definitions():
    data = interval(definitions={"a": "2*b", "b": "u + 1"})
    data["species"]["u"]["reaction"] = "-a"
    spec = check(load_dict(data))
    assert list(spec.definitions) == ["b", "a"]


def test_mesh_remove_splits_the_mesh_into_disconnected_parts(mpi_tmp):
    data = {"mesh": {"shape": "rectangle", "size": [2.0, 1.0], "cells": [20, 10],
                     "remove": "x > 0.9 and x < 1.1", "regions": {"west": "x < 1"}},
            "time": {"end": 1.0, "dt": 0.25, "scheme": "backward-euler"},
            "species": {"u": {"diffusion": 0.5, "initial": "where(x < 1, 1 + y, 0)",
                              "boundary": {"right": {"value": 0.0}}}},
            "observables": {"west_total": {"integral": "u*where(x < 1, 1, 0)"}}}
    res = run_dict(data, mpi_tmp / "run")
    disc = res.discretisation
    comm = disc.comm
    dom = disc.domain
    assert dom.num_cells_global() == 2 * 20 * 10 - 2 * 2 * 10
    x = dom.mesh.geometry.x[:, 0]
    assert not np.any((x > 0.9 + 1e-12) & (x < 1.1 - 1e-12))
    # the named boundaries survive on what is left, the cut is untagged (no flux)
    ft = dom.facet_tags
    own = ft.indices < dom.mesh.topology.index_map(1).size_local
    counts = {name: comm.allreduce(int(np.sum(ft.values[own] == tag)))
              for name, tag in dom.boundaries.items()}
    assert counts == {"left": 10, "right": 10, "bottom": 18, "top": 18}
    assert "west" in dom.regions
    # no transport across the cut: the west part keeps its mass, the east stays empty
    w0 = 1.5 * 0.9
    assert res.final["west_total"] == pytest.approx(w0, rel=1e-10)
    east = disc.u.x.array[disc.V0.tabulate_dof_coordinates()[:, 0] > 1.0]
    assert comm.allreduce(float(np.abs(east).max(initial=0.0)), op=MPI.MAX) == 0.0


def test_scalar_state_restores_a_run_in_progress():
    from tumorpde.model.compartments import ScalarSystem

    data = interval(scalars={"n": {"reaction": "n*(1 - n) + I_u", "initial": 0.1},
                             "m": {"reaction": "-2*m + n"}}, observables={"I_u": "u"})
    spec = check(load_dict(data))
    a = ScalarSystem(spec)
    env = {"I_u": 0.5, "t": 0.0}
    coeffs = [(4.0, -4.0, 0.0), (6.0, -8.0, 2.0), (6.0, -8.0, 2.0)]  # BE, then BDF2 (dt 0.25)
    for c in coeffs[:2]:
        assert a.solve(c, env)
        a.accept()
    b = ScalarSystem(spec)
    b.restore(a.state())
    assert a.solve(coeffs[2], env) and b.solve(coeffs[2], env)
    np.testing.assert_array_equal(a.trial, b.trial)
    # the implicit step satisfies its equation
    r = a.rhs(a.trial, env)
    np.testing.assert_allclose(6 * a.trial - 8 * a.values + 2 * a.previous, r, rtol=1e-10)
    other = check(load_dict(interval(scalars={"q": {}})))
    with pytest.raises(ConfigError, match="checkpoint"):
        ScalarSystem(other).restore(a.state())


@pytest.mark.subprocess
def test_resume_with_scalars_and_fractions_equals_the_uninterrupted_run(tmp_path):
    import os
    import subprocess
    import sys

    from tumorpde.io.tomlio import dumps

    data = interval(drugs=DRUGS, therapy=[{"drug": "pill", "start": 0.3},
                                          {"drug": "beam", "start": 0.9, "every": 0.8,
                                           "doses": 3}],
                    scalars={"c": {"reaction": "I_u - 2*c + pill"}},
                    observables={"I_u": "u"}, output={"checkpoint_every": 0.5})
    data["species"]["u"]["reaction"] = "0.5*u*(1 - u) - 0.1*pill*u + 0.05*c"
    data["time"].update(scheme="bdf2", dt=0.1, end=3.0, output_every=0.5)
    (tmp_path / "m.toml").write_text(dumps(data))
    cli = [sys.executable, "-m", "tumorpde"]
    ref = subprocess.run([*cli, "run", "m.toml", "-q", "-o", "ref"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    env = dict(os.environ, TUMORPDE_FAULT_INJECTION="0:17")  # fails after step 17 (t ~ 1.6)
    bad = subprocess.run([*cli, "run", "m.toml", "-q", "-o", "cut"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and (tmp_path / "cut" / "checkpoint.h5").exists()
    res = subprocess.run([*cli, "resume", "cut", "-q"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    a = read(tmp_path / "ref").observables
    b = read(tmp_path / "cut").observables
    assert list(a) == list(b) and len(a["t"]) == len(b["t"])
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-10, atol=1e-14, err_msg=k)

"""The verification cases as configs: each function returns the dictionary of a TOML file.

Manufactured cases return ``(config, exact)`` with ``exact`` the exact solution
of every species in the config expression language; their source terms are
added by :func:`tumorpde.verification.mms.manufacture`, so they are ordinary
configs that ``tumorpde run`` accepts (``dump_toml`` writes them out).

Literature values are marked with their provenance in the ``[parameters]``
table form (``source = ...``).
"""

from __future__ import annotations

import copy
import tomllib
from typing import Any

from tumorpde.verification.mms import manufacture

__all__ = [
    "mms_single", "mms_coupled", "mms_time", "diffusion_decay", "fisher_exact",
    "fisher_front", "keller_segel", "ac98", "ac2000", "gatenby_gawlinski", "DECAY_EXACT",
]

Exact = dict[str, str]


def _p(value: float, source: str, description: str = "", symbol: str = "") -> dict[str, Any]:
    d: dict[str, Any] = {"value": value, "source": source}
    if description:
        d["description"] = description
    if symbol:
        d["symbol"] = symbol
    return d


# ------------------------------------------------------------------ manufactured: space
def mms_single(n: int, degree: int, dim: int = 2) -> tuple[dict[str, Any], Exact]:
    """One species, variable diffusion, logistic reaction, no-flux boundaries (2D or 3D).

    Exact solution linear in t, so both time schemes are exact and the error is spatial.
    """
    if dim == 2:
        mesh = {"shape": "rectangle", "size": [1.0, 1.0], "cells": [n, n]}
        u = "(1 + t)*(1 + 0.5*cos(pi*x)*cos(pi*y))"
        D = "D0*(1 + 0.5*x*y)"
    else:
        mesh = {"shape": "box", "size": [1.0, 1.0, 1.0], "cells": [n, n, n]}
        u = "(1 + t)*(1 + 0.5*cos(pi*x)*cos(pi*y)*cos(pi*z))"
        D = "D0*(1 + 0.5*x*y*z)"
    data = {
        "title": f"MMS: one species, {dim}D, P{degree}",
        "mesh": mesh,
        "time": {"end": 0.1, "dt": 0.05, "scheme": "bdf2"},
        "discretisation": {"degree": degree},
        "parameters": {"D0": 0.1},
        "species": {"u": {"diffusion": D, "reaction": "u*(1 - u/4)"}},
    }
    exact = {"u": u}
    return manufacture(data, exact), exact


def mms_coupled(n: int, degree: int, taxis: str = "upwind",
                error_observables: bool = False) -> tuple[dict[str, Any], Exact]:
    """Two species with taxis, reactions and per-region diffusion with a jump at x = 1/2.

    ``u`` diffuses with D = 0.05 for x < 1/2 and 0.2 elsewhere and moves up the gradient
    of ``v``.  The exact ``u`` has a kink at the interface such that ``u`` and the normal
    flux ``D du/dx - chi u dv/dx`` are continuous (``dv/dx = 0`` there), and the source is
    continuous too (so the lumped P1 source at interface vertices is exact).  ``n`` must
    be even (interface on mesh edges).
    """
    if n % 2:
        raise ValueError("n must be even: the region interface x = 1/2 must follow mesh edges")
    data = {
        "title": f"MMS: coupled taxis system with a diffusion jump, P{degree} {taxis}",
        "mesh": {"shape": "rectangle", "size": [1.0, 1.0], "cells": [n, n],
                 "regions": {"inner": "x < 0.5"}},
        "time": {"end": 0.1, "dt": 0.05, "scheme": "bdf2"},
        "discretisation": {"degree": degree, "taxis": taxis},
        "parameters": {"chi": 0.05, "Du1": 0.05, "Du2": 0.2, "Dv": 0.1},
        "species": {
            "u": {"diffusion": {"inner": "Du1", "default": "Du2"}, "reaction": "u*(1 - u/4)",
                  "taxis": [{"toward": "v", "sensitivity": "chi*u"}]},
            "v": {"diffusion": "Dv", "reaction": "u - v"},
        },
    }
    exact = {"u": "(1 + t)*(3 - 0.1*cos(pi*x)/where(x < 0.5, Du1, Du2) "
                  "+ 0.5*cos(pi*x)**3*cos(pi*y))",
             "v": "(1 + t)*(1 + 0.25*cos(2*pi*x)*cos(pi*y))"}
    return manufacture(data, exact, error_observables=error_observables), exact


# ------------------------------------------------------------------ manufactured: time
def mms_time(dt: float, scheme: str, variable: bool = False, degree: int = 1,
             adaptive: bool = False, rtol: float = 1e-3) -> tuple[dict[str, Any], Exact]:
    """Three coupled species (taxis, reactions, per-region diffusion) exact in space.

    On 8 cells of [0, 1] the exact solutions are piecewise linear in x (``w`` with a kink at
    the diffusion jump x = 1/2 that keeps ``D dw/dx`` continuous), so P1 and P2 represent
    them exactly and the error at t = 1 is the time-discretisation error alone.  With
    ``variable``, output times every 2.3 dt force steps of dt, dt, 0.3 dt, 0.6 dt, ...
    (ratios up to 2) that all scale with dt.
    """
    time: dict[str, Any] = {"end": 1.0, "dt": dt, "scheme": scheme, "output_every": 0.5}
    if variable:
        time["output_every"] = 2.3 * dt
    if adaptive:
        time.update({"adaptive": True, "rtol": rtol, "atol": rtol * 1e-3, "output_every": 0.5})
    data = {
        "title": f"MMS in time: {scheme}{' variable steps' if variable else ''}",
        "mesh": {"shape": "interval", "size": [1.0], "cells": [8], "regions": {"inner": "x < 0.5"}},
        "time": time,
        "discretisation": {"degree": degree, "taxis": "upwind" if degree == 1 else "galerkin"},
        "parameters": {"chi": 0.1, "Du": 0.05, "Dv": 0.2, "Dw1": 0.5, "Dw2": 0.25},
        "species": {
            "u": {"diffusion": "Du", "reaction": "u*(1 - u/4)",
                  "taxis": [{"toward": "v", "sensitivity": "chi*u"}]},
            "v": {"diffusion": "Dv", "reaction": "u - v"},
            "w": {"diffusion": {"inner": "Dw1", "default": "Dw2"}, "reaction": "u*v/4 - w"},
        },
    }
    exact = {"u": "(2 + sin(2*t))*(1 + 0.5*x)",
             "v": "(1 + 0.5*cos(3*t))*(1 + x)",
             "w": "(1 + 0.5*sin(t))*(1 + 0.1*(x - 0.5)/where(x < 0.5, Dw1, Dw2))"}
    return manufacture(data, exact, dirichlet=["left", "right"]), exact


# ------------------------------------------------------------------ closed forms
DECAY_EXACT = {
    1: "exp(-k*t) + cos(pi*x)*exp(-(D*pi**2 + k)*t)",
    2: "exp(-k*t) + cos(pi*x)*cos(2*pi*y)*exp(-(5*D*pi**2 + k)*t)",
    3: "exp(-k*t) + cos(pi*x)*cos(pi*y)*cos(pi*z)*exp(-(3*D*pi**2 + k)*t)",
}


def diffusion_decay(dim: int, n: int, dt: float, degree: int = 1,
                    scheme: str = "bdf2") -> tuple[dict[str, Any], Exact]:
    """du/dt = D lap u - k u with no flux: a constant plus a cosine mode, both decaying."""
    shape = {1: "interval", 2: "rectangle", 3: "box"}[dim]
    exact = {"u": DECAY_EXACT[dim]}
    data = {
        "title": f"Diffusion-decay, {dim}D",
        "mesh": {"shape": shape, "size": [1.0] * dim, "cells": [n] * dim},
        "time": {"end": 1.0, "dt": dt, "scheme": scheme, "output_every": 0.5},
        "discretisation": {"degree": degree},
        "parameters": {"D": 0.05, "k": 0.5},
        "species": {"u": {"diffusion": "D", "reaction": "-k*u",
                          "initial": exact["u"]}},  # t = time.start in initial values
    }
    return data, exact


def fisher_exact(n: int, dt: float, end: float = 4.0) -> tuple[dict[str, Any], Exact]:
    """Fisher-KPP with D = rho = 1 from the exact travelling wave of Ablowitz & Zeppetella.

    u = 1/(1 + exp((x - x0 - c t)/sqrt(6)))**2 with c = 5/sqrt(6) (Ablowitz & Zeppetella 1979),
    on [0, 40] with the exact values as Dirichlet conditions at both ends.
    """
    wave = "1/(1 + exp((x - x0 - 5/sqrt(6)*t)/sqrt(6)))**2"
    data = {
        "title": "Fisher-KPP: exact travelling wave (Ablowitz & Zeppetella 1979)",
        "mesh": {"shape": "interval", "size": [40.0], "cells": [n]},
        "time": {"end": end, "dt": dt, "scheme": "bdf2", "output_every": end / 2},
        "parameters": {"D": 1.0, "rho": 1.0, "x0": 10.0},
        "species": {"u": {"diffusion": "D", "reaction": "rho*u*(1 - u)",
                          "initial": wave,
                          "boundary": {"left": {"value": wave}, "right": {"value": wave}}}},
    }
    return data, {"u": wave}


def fisher_front(h: float, dt: float, end: float, length: float,
                 D: float = 1.0, rho: float = 1.0) -> dict[str, Any]:
    """Fisher-KPP from a step at x = 5: the front position is the integral of u minus 5."""
    return {
        "title": "Fisher-KPP front from a step (Bramson delay)",
        "mesh": {"shape": "interval", "size": [length], "cells": [round(length / h)]},
        "time": {"end": end, "dt": dt, "scheme": "bdf2", "output_every": end / 4},
        "parameters": {"D": D, "rho": rho},
        "species": {"u": {"diffusion": "D", "reaction": "rho*u*(1 - u)",
                          "initial": "where(x < 5, 1, 0)"}},
        "observables": {"front": "u"},
    }


def keller_segel(cells: int | None = None, end: float | None = None,
                 taxis: str = "upwind") -> dict[str, Any]:
    """The bundled Keller-Segel example (optionally on another mesh or time span)."""
    from tumorpde.model.config import EXAMPLES_DIR

    data = tomllib.loads((EXAMPLES_DIR / "keller-segel.toml").read_text())
    if cells is not None:
        data["mesh"]["cells"] = [cells, cells]
    if end is not None:
        data["time"]["end"] = end
        data["time"]["output_every"] = end / 4
    data["discretisation"] = {"taxis": taxis}
    data["observables"] = {"min_cells": {"minimum": "cells"}, "max_cells": {"maximum": "cells"}}
    return signed_if_galerkin(data)


def signed_if_galerkin(data: dict[str, Any]) -> dict[str, Any]:
    """Galerkin taxis is shown *failing* to stay non-negative: let those runs go negative."""
    if data.get("discretisation", {}).get("taxis") == "galerkin":
        for s in data["species"].values():
            s["nonnegative"] = False
    return data


# ------------------------------------------------------------------ published models
AC98_SOURCE = ("Anderson & Chaplain 1998, Bull Math Biol 60:857 (nondimensional; values agreed "
               "by two independent public codes, project literature notes)")


def ac98(n: int, end: float, dt: float, taxis: str = "upwind", scheme: str = "backward-euler",
         fibronectin: str = "0.75*exp(-x**2/0.45)", output_every: float | None = None,
         dim: int = 2) -> dict[str, Any]:
    """Anderson & Chaplain (1998) endothelial-cell chemotaxis and haptotaxis on the unit square.

    dn/dt = D lap n - div(chi0/(1 + alpha c) n grad c) - div(rho n grad f),
    df/dt = beta n - gamma n f,  dc/dt = -eta n c.  Tumour (TAF source) along x = 1:
    c(x, 0) = exp(-(1 - x)**2/0.45) (the linear-source variant); fibronectin
    f(x, 0) = 0.75 exp(-x**2/0.45); sprouts n(x, y, 0) = exp(-x**2/0.001) sin(6 pi y)**2.
    With ``dim = 1``: the same model on [0, 1] with n(x, 0) = exp(-x**2/0.001).
    """
    mesh = {"shape": "rectangle", "size": [1.0, 1.0], "cells": [n, n]} if dim == 2 else \
        {"shape": "interval", "size": [1.0], "cells": [n]}
    n0 = "exp(-x**2/0.001)*sin(6*pi*y)**2" if dim == 2 else "exp(-x**2/0.001)"
    return signed_if_galerkin({
        "title": "Anderson-Chaplain 1998 angiogenesis (continuous model)",
        "mesh": mesh,
        "time": {"end": end, "dt": dt, "scheme": scheme, "output_every": output_every or end / 4},
        "discretisation": {"taxis": taxis},
        "parameters": {
            "D": _p(0.00035, AC98_SOURCE, "endothelial-cell random motility", "D"),
            "chi0": _p(0.38, AC98_SOURCE, "chemotactic coefficient", "chi_0"),
            "alpha": _p(0.6, AC98_SOURCE, "receptor saturation of chemotaxis", "alpha"),
            "rho": _p(0.34, AC98_SOURCE, "haptotactic coefficient", "rho"),
            "beta": _p(0.05, AC98_SOURCE, "fibronectin production by ECs", "beta"),
            "gamma": _p(0.1, AC98_SOURCE, "fibronectin uptake by ECs", "gamma"),
            "eta": _p(0.1, AC98_SOURCE, "TAF uptake by ECs", "eta"),
        },
        "species": {
            "n": {"diffusion": "D", "initial": n0,
                  "description": "endothelial-cell density",
                  "taxis": [{"toward": "c", "sensitivity": "chi0/(1 + alpha*c)*n"},
                            {"toward": "f", "sensitivity": "rho*n"}]},
            "f": {"diffuses": False, "reaction": "beta*n - gamma*n*f", "initial": fibronectin,
                  "description": "fibronectin"},
            "c": {"diffuses": False, "reaction": "-eta*n*c", "initial": "exp(-(1 - x)**2/0.45)",
                  "description": "tumour angiogenic factor (TAF)"},
        },
        "observables": {
            "min_n": {"minimum": "n"},
            "max_n": {"maximum": "n"},
            "centroid_x": {"integral": "x*n", "per": "n"},
            "front_x": {"maximum": "x*where(n > 0.01, 1, 0)",
                        "description": "largest x with n > 0.01"},
        },
    })


AC2000_SOURCE = "Anderson et al. 2000, J Theor Med 2:129 (project literature notes)"


def ac2000(n: int, end: float, dt: float, scheme: str = "backward-euler") -> dict[str, Any]:
    """Anderson et al. (2000) tumour invasion: haptotaxis up ECM gradients made by MDE.

    dn/dt = d_n n'' - gamma (n f')',  df/dt = -eta m f,  dm/dt = d_m m'' + alpha n - beta m
    on [0, 1], no flux.  Initial data (assumed, the usual choice of the paper's 1D runs):
    n = exp(-x**2/0.01), f = 1 - 0.5 n, m = 0.5 n.
    """
    n0 = "exp(-x**2/0.01)"
    return {
        "title": "Anderson et al. 2000 invasion (ECM/MDE haptotaxis)",
        "mesh": {"shape": "interval", "size": [1.0], "cells": [n]},
        "time": {"end": end, "dt": dt, "scheme": scheme, "output_every": end / 4},
        "parameters": {
            "dn": _p(0.001, AC2000_SOURCE, "tumour-cell random motility", "d_n"),
            "gamma": _p(0.005, AC2000_SOURCE, "haptotactic coefficient", "gamma"),
            "eta": _p(10.0, AC2000_SOURCE, "ECM degradation by MDE", "eta"),
            "dm": _p(0.001, AC2000_SOURCE, "MDE diffusion", "d_m"),
            "alpha": _p(0.1, AC2000_SOURCE, "MDE production", "alpha"),
            "beta": _p(0.0, AC2000_SOURCE, "MDE decay", "beta"),
        },
        "species": {
            "n": {"diffusion": "dn", "initial": n0, "description": "tumour cells",
                  "taxis": [{"toward": "f", "sensitivity": "gamma*n"}]},
            "f": {"diffuses": False, "reaction": "-eta*m*f", "initial": f"1 - 0.5*{n0}",
                  "description": "extracellular matrix (ECM)"},
            "m": {"diffusion": "dm", "reaction": "alpha*n - beta*m", "initial": f"0.5*{n0}",
                  "description": "matrix-degrading enzymes (MDE)"},
        },
        "observables": {"min_n": {"minimum": "n"}, "centroid_x": {"integral": "x*n", "per": "n"}},
    }


GG_SOURCE = "Gatenby & Gawlinski 1996, Cancer Res 56:5745 (nondimensional; project literature notes)"


def gatenby_gawlinski(delta1: float, n: int, length: float, end: float, dt: float,
                      delta3: float = 70.0) -> dict[str, Any]:
    """Gatenby & Gawlinski (1996) acid-mediated invasion on a line.

    normal' = normal (1 - normal) - delta1 acid normal;
    tumour' = rho2 tumour (1 - tumour) + (Delta2 (1 - normal) tumour')';
    acid'   = delta3 (tumour - acid) + acid''.
    """
    t0 = "0.5*(1 - tanh((x - 0.1)/0.005))"
    return {
        "title": f"Gatenby-Gawlinski acid-mediated invasion, delta1 = {delta1}",
        "mesh": {"shape": "interval", "size": [length], "cells": [n]},
        "time": {"end": end, "dt": dt, "scheme": "bdf2", "output_every": end / 4},
        "parameters": {
            "delta1": _p(delta1, "varied: the gap is predicted for delta1 > 1 (GG 1996)",
                         "acid toxicity to normal tissue", "delta_1"),
            "rho2": _p(1.0, GG_SOURCE, "tumour growth rate relative to normal tissue", "rho_2"),
            "Delta2": _p(4e-5, GG_SOURCE, "tumour/acid diffusivity ratio D2/D3", "Delta_2"),
            "delta3": _p(delta3, GG_SOURCE + "; PMC3005191 table (a public code uses 110)",
                         "acid production and removal", "delta_3"),
        },
        "species": {
            "normal": {"diffuses": False, "reaction": "normal*(1 - normal) - delta1*acid*normal",
                       "initial": f"1 - {t0}", "description": "normal tissue density"},
            "tumour": {"diffusion": "Delta2*(1 - normal)", "reaction": "rho2*tumour*(1 - tumour)",
                       "initial": t0, "description": "tumour cell density"},
            "acid": {"diffusion": 1.0, "reaction": "delta3*(tumour - acid)", "initial": 0.0,
                     "description": "excess H+ concentration"},
        },
        "observables": {"tumour_front": "tumour",
                        "min_tumour": {"minimum": "tumour"}, "min_normal": {"minimum": "normal"}},
    }


def with_changes(data: dict[str, Any], **tables: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with keys of top-level tables replaced."""
    out = copy.deepcopy(data)
    for table, values in tables.items():
        out.setdefault(table, {}).update(values)
    return out

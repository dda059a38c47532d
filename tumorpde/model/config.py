"""Reading and checking configurations.

``load(path, overrides)`` reads TOML, applies ``--set KEY=VALUE`` overrides,
maps the tables one-to-one onto :mod:`tumorpde.model.objects` objects (unknown keys and
wrong types are errors) and :func:`check` then verifies names, expressions and
units, returning a :class:`Spec` with every expression parsed.  All of this is
deterministic and collective-free, so it fails identically on every MPI rank.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tumorpde.errors import ConfigError
from tumorpde.model import expressions as ex
from tumorpde.model import units as un
from tumorpde.model import validation as va
from tumorpde.model.compartments import check_scalars, load_scalars
from tumorpde.model.objects import (
    Boundary,
    Calibration,
    Config,
    Discretisation,
    Mesh,
    Observable,
    Output,
    Parameter,
    Species,
    Taxis,
    Time,
    Units,
)
from tumorpde.model.pharmacology import check_therapies, load_drugs, load_therapies
from tumorpde.model.spec import (
    ObservableSpec,
    Spec,
    SpeciesSpec,
    TermSpec,
    check_units,
    parse_term,
    symbol_dims,
    term_factor,
)

__all__ = ["load", "read_data", "initial_data", "initial_image", "load_dict", "parse_set", "apply_overrides",
           "check", "Spec", "to_dict", "validate", "EXAMPLES_DIR", "find_config", "merge", "resolve_extends",
           "TermSpec", "SpeciesSpec", "ObservableSpec", "symbol_dims", "term_factor", "check_units"]

EXAMPLES_DIR = Path(__file__).parent.parent / "examples"
MODELS_DIR = Path(__file__).parent.parent / "models"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SCHEMES = ("backward-euler", "bdf2")
SHAPES = ("interval", "rectangle", "box", "disk", "sphere", "file")
#: cell types of the built-in shapes (``mesh.cell``): the simplex first (the default)
CELL_TYPES = {"rectangle": ("triangle", "quadrilateral"), "box": ("tetrahedron", "hexahedron")}
#: values of ``mesh.coordinates``, and the built-in shapes each applies to
COORDINATES = {"cartesian": None, "spherical": ("interval",),
               "cylindrical": ("interval", "rectangle")}
MAX_CELLS = 50_000_000


# ----------------------------------------------------------------------------- loading
def find_config(name_or_path: str) -> Path:
    """Resolve a config argument: a file path, or the name of a bundled example."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for folder in (EXAMPLES_DIR, MODELS_DIR):
        bundled = folder / f"{name_or_path}.toml"
        if bundled.is_file() and "/" not in name_or_path:
            return bundled
    if p.exists():
        raise ConfigError("", f"{name_or_path} is not a file")
    raise ConfigError("", f"config file {name_or_path!r} not found (and no bundled example of that "
                          "name: see `tumorpde list`)")


def load(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a TOML config file, apply ``--set`` overrides and build the model objects."""
    path = Path(path)
    cfg = load_dict(read_data(path, overrides))
    if cfg.mesh.file and not Path(cfg.mesh.file).is_absolute():
        # mesh files are relative to the config file, or to the working directory
        rel = path.parent / cfg.mesh.file
        if rel.exists() or not Path(cfg.mesh.file).exists():
            cfg.mesh.file = str(rel)
    def beside(f: str) -> str:
        # files named in a config are relative to it, or to the working directory
        rel = path.parent / f
        return str(rel) if not Path(f).is_absolute() and (rel.exists() or not Path(f).exists()) \
            else f

    for s in cfg.species.values():
        for kind in ("data", "image"):
            if isinstance(s.initial, dict) and kind in s.initial:
                s.initial = {**dict(s.initial), kind: beside(str(s.initial[kind]))}
    for p in cfg.parameters.values():
        if isinstance(p, Parameter) and p.image is not None:
            p.image = beside(p.image)
    if cfg.calibration is not None:
        # data files are relative to the config file, or to the working directory
        cfg.calibration.data = [beside(f) for f in cfg.calibration.data]
    return cfg


def read_data(path: str | Path, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """The table of a TOML config file with its ``extends`` resolved and ``--set`` applied.

    Unreadable files and invalid TOML are :class:`ConfigError`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read {path}: {exc.__class__.__name__}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path.name} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError("", f"{path.name} is nested too deeply") from None
    data = resolve_extends(data, path)
    return apply_overrides(data, [parse_set(s) for s in (overrides or [])])


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: tables merge key by key, anything else in ``over`` replaces ``base``."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_extends(data: dict[str, Any], path: Path, depth: int = 0) -> dict[str, Any]:
    """Apply ``extends = "BASE"`` (a config file relative to this one, or a bundled name).

    The result is BASE with this file's tables merged over it (see :func:`merge`).
    """
    if "extends" not in data:
        return data
    base_name = data["extends"]
    if not isinstance(base_name, str):
        raise ConfigError("extends", "expected the name of a bundled example or a config file")
    if depth > 8:
        raise ConfigError("extends", "chain of more than 8 configs (a cycle?)")
    rel = path.parent / base_name
    base_path = rel if rel.is_file() else find_config(base_name)
    try:
        base = tomllib.loads(base_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("extends", f"cannot read {base_name}: {exc}") from None
    base = resolve_extends(base, base_path, depth + 1)
    own = {k: v for k, v in data.items() if k != "extends"}
    return merge(base, own)


def parse_set(item: str) -> tuple[list[str], Any]:
    """Parse one ``--set KEY=VALUE`` (KEY dotted, VALUE as TOML; a bare word is a string)."""
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError("--set", f"expected KEY=VALUE, got {item!r}")
    key, value = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p or not re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts):
        raise ConfigError("--set", f"invalid key {key!r} (use a dotted path like time.end)")
    value = value.strip()
    if not value:
        raise ConfigError("--set", f"no value given for {key}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.+\-/* ^()]*", value) and not value.startswith(("[", "{")):
            parsed = value  # a bare word such as backward-euler or an expression
        else:
            raise ConfigError("--set", f"cannot parse the value of {key}: {value!r} is not TOML") from None
    return parts, parsed


def apply_overrides(data: dict[str, Any], sets: list[tuple[list[str], Any]]) -> dict[str, Any]:
    """Return a copy of ``data`` with the overrides applied."""
    data = copy.deepcopy(data)
    for parts, value in sets:
        node = data
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError("--set", f"{'.'.join(parts[:i + 1])} is not a table")
            node = nxt
        node[parts[-1]] = value
    return data


# ------------------------------------------------------------------- dict -> objects
def load_dict(data: dict[str, Any]) -> Config:
    """Build a :class:`Config` from a parsed TOML dictionary (strict: unknown keys are errors)."""
    data = va.table(data, "")
    va.fields(Config, data, "")
    if "species" not in data:
        raise ConfigError("species", "no species declared (add a [species.NAME] table)")
    sp = va.table(data["species"], "species")
    if not sp:
        raise ConfigError("species", "no species declared (add a [species.NAME] table)")
    species = {name: _species(s, f"species.{name}") for name, s in sp.items()}
    cfg = Config(species=species)
    if "units" in data:
        u = va.fields(Units, va.table(data["units"], "units"), "units")
        cfg.units = Units(**{k: va.string(v, f"units.{k}") for k, v in u.items()})
    if "mesh" in data:
        cfg.mesh = _mesh(va.table(data["mesh"], "mesh"))
    if "time" in data:
        cfg.time = _time(va.table(data["time"], "time"))
    if "output" in data:
        cfg.output = _output(va.table(data["output"], "output"), cfg.time)
    if "parameters" in data:
        params = va.table(data["parameters"], "parameters")
        for k, v in params.items():
            cfg.parameters[k] = _parameter(v, f"parameters.{k}")
    if "discretisation" in data:
        cfg.discretisation = _discretisation(va.table(data["discretisation"], "discretisation"))
    if "solver" in data:
        cfg.solver = _solver(va.table(data["solver"], "solver"))
    if "observables" in data:
        obs = va.table(data["observables"], "observables")
        cfg.observables = {k: _observable(v, f"observables.{k}") for k, v in obs.items()}
    if "definitions" in data:
        defs = va.table(data["definitions"], "definitions")
        for k, v in defs.items():
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise ConfigError(f"definitions.{k}", "expected an expression string")
        cfg.definitions = {k: str(v) for k, v in defs.items()}
    # scalar compartments, drugs and therapy regimens (tumorpde.model.compartments, .pharmacology)
    if "scalars" in data:
        cfg.scalars = load_scalars(data["scalars"])
    if "drugs" in data or "therapy" in data:
        cfg.drugs = load_drugs(data.get("drugs", {}))
        cfg.therapy = load_therapies(data.get("therapy", []))
    if "calibration" in data:
        cfg.calibration = _calibration(va.table(data["calibration"], "calibration"))
    if "knockout" in data:
        ko = data["knockout"]
        if not isinstance(ko, list) or not all(isinstance(x, str) for x in ko):
            raise ConfigError("knockout", "expected an array of species names")
        cfg.knockout = list(ko)
    if "title" in data:
        cfg.title = va.string(data["title"], "title")
    if "description" in data:
        cfg.description = va.string(data["description"], "description")
    return cfg


def _output(data: dict[str, Any], time: Time) -> Output:
    o = va.fields(Output, data, "output")
    out = Output()
    if "checkpoint_every" in o:
        out.checkpoint_every = va.number(o["checkpoint_every"], "output.checkpoint_every",
                                         positive=True)
    if "fields" in o:
        f = o["fields"]
        if not isinstance(f, list) or not all(isinstance(x, str) for x in f):
            raise ConfigError("output.fields", "expected an array of species names")
        out.fields = list(f)
    if "progress" in o:
        out.progress = va.boolean(o["progress"], "output.progress")
    span = time.end - time.start
    if out.checkpoint_every is not None and span / out.checkpoint_every > 100_000:
        raise ConfigError("output.checkpoint_every", "more than 100000 checkpoints requested")
    return out


def _discretisation(data: dict[str, Any]) -> Discretisation:
    d = va.fields(Discretisation, data, "discretisation")
    disc = Discretisation()
    if "degree" in d:
        disc.degree = va.number(d["degree"], "discretisation.degree", integer=True)
        if disc.degree not in (1, 2):
            raise ConfigError("discretisation.degree", f"must be 1 or 2, got {disc.degree}")
    if "taxis" in d:
        disc.taxis = va.string(d["taxis"], "discretisation.taxis", ("upwind", "galerkin"))
    if "lumped_mass" in d:
        disc.lumped_mass = va.boolean(d["lumped_mass"], "discretisation.lumped_mass")
    return disc


def _solver(s: dict[str, Any]) -> dict[str, Any]:
    """PETSc options of ``[solver]``: names of letters, digits and '_', scalar values."""
    for k, v in s.items():
        if not re.fullmatch(r"[A-Za-z0-9_]+", k):
            raise ConfigError(f"solver.{k}", "PETSc option names contain letters, digits "
                                             "and '_' only (without the leading '-')")
        if isinstance(v, dict | list):
            raise ConfigError(f"solver.{k}", f"expected a number, string or boolean, got "
                                             f"{va.type_name(v)}")
    return dict(s)


def _parameter(v: Any, key: str) -> float | str | Parameter:
    if isinstance(v, dict):
        d = va.fields(Parameter, v, key)
        if "value" not in d:
            raise ConfigError(f"{key}.value", "missing (a number or a quantity string)")
        p = Parameter(value=_param_value(d["value"], f"{key}.value"))
        for k in ("description", "source", "symbol"):
            if k in d:
                setattr(p, k, va.string(d[k], f"{key}.{k}"))
        if "range" in d:
            p.range = va.number_list(d["range"], f"{key}.range", (2,))
        if "field" in d:
            p.field = va.boolean(d["field"], f"{key}.field")
        if "image" in d:
            p.image = _image_name(d["image"], f"{key}.image")
            if "field" in d and not p.field:
                raise ConfigError(f"{key}.field", "a parameter read from an image is a field "
                                                  "(leave out field = false)")
            p.field = True
        if "labels" in d:
            if p.image is None:
                raise ConfigError(f"{key}.labels", "labels map the values of a label image: "
                                                   "give image as well")
            p.labels = _labels(d["labels"], f"{key}.labels")
        return p
    return _param_value(v, key)


def _image_name(v: Any, key: str) -> str:
    name = va.string(v, key)
    if not name.lower().endswith((".nii", ".nii.gz")):
        raise ConfigError(key, f"{name!r} is not a NIfTI image name (expected .nii or .nii.gz)")
    return name


def _labels(v: Any, key: str) -> dict[str, float]:
    table = va.table(v, key)
    if not table:
        raise ConfigError(key, "is empty (give LABEL = VALUE pairs)")
    out: dict[str, float] = {}
    for k, x in table.items():
        try:
            label = int(str(k))
        except ValueError:
            raise ConfigError(f"{key}.{k}", "a label is an integer voxel value") from None
        out[str(label)] = float(va.number(x, f"{key}.{k}"))
    return out


def _initial_image(v: dict[str, Any], key: str) -> dict[str, Any]:
    """``{image = "FILE.nii.gz", scale = S}``: an initial condition from an image."""
    unknown = sorted(set(v) - {"image", "scale"})
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "unknown key (an initial condition from an "
                                                 "image takes image and scale)")
    out: dict[str, Any] = {"image": _image_name(v["image"], f"{key}.image")}
    if "scale" in v:
        out["scale"] = va.number(v["scale"], f"{key}.scale")
    return out


def initial_image(s: Species) -> tuple[str, float] | None:
    """``(file, scale)`` of a species whose initial condition is an image, else None."""
    v = s.initial
    if isinstance(v, dict) and "image" in v:
        return str(v["image"]), float(v.get("scale", 1.0))
    return None


def _initial_data(v: dict[str, Any], key: str) -> dict[str, Any]:
    """``{data = "FILE.csv", time = T0}``: an initial condition from field samples."""
    if "image" in v:
        if "data" in v:
            raise ConfigError(key, "give data (samples) or image, not both")
        return _initial_image(v, key)
    unknown = sorted(set(v) - {"data", "time"})
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "unknown key (an initial condition from data "
                                                 "takes data and time)")
    out: dict[str, Any] = {"data": va.string(v["data"], f"{key}.data")}
    if not out["data"]:
        raise ConfigError(f"{key}.data", "expected a data file name")
    if "time" in v:
        out["time"] = va.number(v["time"], f"{key}.time")
    return out


def initial_data(s: Species) -> tuple[str, float | None] | None:
    """``(file, time)`` of a species whose initial condition comes from data, else None."""
    v = s.initial
    if isinstance(v, dict) and "data" in v:
        return str(v["data"]), (float(v["time"]) if "time" in v else None)
    return None


CALIBRATION_METHODS = ("lsq",)


def _calibration(d: dict[str, Any]) -> Calibration:
    d = va.fields(Calibration, d, "calibration")
    c = Calibration()
    if "data" in d:
        files = d["data"]
        if isinstance(files, str):
            files = [files]
        if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
            raise ConfigError("calibration.data", "expected a list of data file names")
        c.data = list(files)
    if "fit" in d:
        fit = va.table(d["fit"], "calibration.fit")
        for k, v in fit.items():
            key = f"calibration.fit.{k}"
            bounds = va.number_list(v, key, (0, 2)) if isinstance(v, list) else None
            if bounds is None:
                raise ConfigError(key, "expected bounds [LOW, HIGH] (or [] for the parameter's "
                                       "range)")
            if bounds and not bounds[0] < bounds[1]:
                raise ConfigError(key, f"the bounds must have LOW < HIGH, got {bounds}")
            c.fit[k] = list(bounds)
    if "until" in d:
        c.until = va.number(d["until"], "calibration.until")
    if "method" in d:
        c.method = va.string(d["method"], "calibration.method", CALIBRATION_METHODS)
    if "starts" in d:
        n = d["starts"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError("calibration.starts", f"expected a positive integer, got {n!r}")
        c.starts = n
    if "max_evaluations" in d:
        n = d["max_evaluations"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ConfigError("calibration.max_evaluations",
                              f"expected an integer of at least 2, got {n!r}")
        c.max_evaluations = n
    if "regularise" in d:
        reg = va.table(d["regularise"], "calibration.regularise")
        c.regularise = {k: va.number(v, f"calibration.regularise.{k}", nonneg=True)
                        for k, v in reg.items()}
    return c


def _param_value(v: Any, key: str) -> float | str:
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ConfigError(key, f"expected a number or a quantity string like '0.01 mm^2/day', "
                               f"got {va.type_name(v)}")
    return va.number(v, key) if isinstance(v, int | float) else v


def _observable(v: Any, key: str) -> Observable:
    if isinstance(v, str | int | float) and not isinstance(v, bool):
        return Observable(integral=str(v))
    d = va.fields(Observable, va.table(v, key), key)
    ob = Observable()
    kinds = [k for k in ("integral", "maximum", "minimum", "value", "radius") if k in d]
    if len(kinds) != 1:
        raise ConfigError(key, "give exactly one of 'integral', 'maximum', 'minimum', 'value', "
                               "'radius'")
    for k in ("integral", "maximum", "minimum", "value", "radius", "per"):
        if k in d:
            val = d[k]
            if isinstance(val, bool) or not isinstance(val, str | int | float):
                raise ConfigError(f"{key}.{k}", "expected an expression string")
            setattr(ob, k, str(val))
    if ob.per is not None and ob.integral is None:
        raise ConfigError(f"{key}.per", "'per' applies to an 'integral' only")
    levels = [k for k in ("above", "below") if k in d]
    if ob.radius is not None and len(levels) != 1:
        raise ConfigError(key, "a radius observable needs exactly one of 'above' or 'below' "
                               "(the level that bounds its region)")
    if ob.radius is None and levels:
        raise ConfigError(f"{key}.{levels[0]}", f"'{levels[0]}' applies to a 'radius' only")
    for k in levels:
        setattr(ob, k, va.number(d[k], f"{key}.{k}"))
    if "cumulative" in d:
        ob.cumulative = va.boolean(d["cumulative"], f"{key}.cumulative")
        if ob.cumulative and ob.radius is not None:
            raise ConfigError(f"{key}.cumulative", "a radius is a position, not a rate: it "
                                                   "cannot be cumulative")
    if "description" in d:
        ob.description = va.string(d["description"], f"{key}.description")
    return ob


def _species(data: Any, key: str) -> Species:
    d = va.fields(Species, va.table(data, key), key)
    s = Species()
    if "diffusion" in d:
        s.diffusion = va.coefficient(d["diffusion"], f"{key}.diffusion")
    if "reaction" in d:
        s.reaction = va.scalar_or_expr(d["reaction"], f"{key}.reaction")
    if "initial" in d:
        v = d["initial"]
        s.initial = _initial_data(v, f"{key}.initial") if isinstance(v, dict) and \
            ("data" in v or "image" in v) \
            else va.coefficient(v, f"{key}.initial")
    if "diffuses" in d:
        s.diffuses = va.boolean(d["diffuses"], f"{key}.diffuses")
    if "units" in d:
        s.units = va.string(d["units"], f"{key}.units")
    if "description" in d:
        s.description = va.string(d["description"], f"{key}.description")
    if "nonnegative" in d:
        s.nonnegative = va.boolean(d["nonnegative"], f"{key}.nonnegative")
    if "taxis" in d:
        tx = d["taxis"]
        if isinstance(tx, dict):
            tx = [tx]
        if not isinstance(tx, list):
            raise ConfigError(f"{key}.taxis", "expected an array of {toward, sensitivity} tables")
        for i, t in enumerate(tx):
            tk = f"{key}.taxis[{i}]"
            t = va.fields(Taxis, va.table(t, tk), tk)
            if "toward" not in t or "sensitivity" not in t:
                raise ConfigError(tk, "needs both 'toward' and 'sensitivity'")
            s.taxis.append(Taxis(toward=va.string(t["toward"], f"{tk}.toward"),
                                 sensitivity=va.scalar_or_expr(t["sensitivity"],
                                                             f"{tk}.sensitivity")))
    if "boundary" in d:
        b = va.table(d["boundary"], f"{key}.boundary")
        for name, bc in b.items():
            bk = f"{key}.boundary.{name}"
            bc = va.fields(Boundary, va.table(bc, bk), bk)
            obj = Boundary(**{k: va.scalar_or_expr(v, f"{bk}.{k}") for k, v in bc.items()})
            if obj.flux is not None and (obj.value is not None or obj.transfer is not None):
                raise ConfigError(bk, "give either 'flux', or 'value' (Dirichlet), or "
                                      "'transfer' with 'value' (Robin)")
            if obj.transfer is not None and obj.value is None:
                raise ConfigError(bk, "a Robin condition needs 'value' with 'transfer'")
            if obj.flux is None and obj.value is None:
                raise ConfigError(bk, "give 'value', 'flux', or 'transfer' and 'value'")
            s.boundary[name] = obj
    return s


def _mesh(d: dict[str, Any]) -> Mesh:
    va.fields(Mesh, d, "mesh")
    m = Mesh()
    if "shape" in d:
        m.shape = va.string(d["shape"], "mesh.shape", SHAPES)
    if "file" in d:
        m.file = va.string(d["file"], "mesh.file")
        if "shape" not in d:
            m.shape = "file"
    dims = {"interval": (1,), "rectangle": (2,), "box": (3,)}.get(m.shape, (1, 2, 3))
    if "size" in d:
        m.size = va.number_list(d["size"], "mesh.size", dims, positive=True)
    elif m.shape in ("interval", "box"):
        m.size = [1.0] * dims[0]
    if "cells" in d:
        m.cells = va.number_list(d["cells"], "mesh.cells", dims, positive=True, integer=True)
    elif m.shape in ("interval", "box"):
        m.cells = [32] * dims[0] if m.shape == "interval" else [8, 8, 8]
    if m.shape in ("interval", "rectangle", "box"):
        if len(m.size) != len(m.cells):
            raise ConfigError("mesh.cells", f"has {len(m.cells)} entries but mesh.size has "
                                            f"{len(m.size)}")
        per = {"box": 6, "rectangle": 2}.get(m.shape, 1) if d.get("cell") not in \
            ("quadrilateral", "hexahedron") else 1
        if math.prod(m.cells) * per > MAX_CELLS:
            raise ConfigError("mesh.cells", f"{m.cells} gives more than {MAX_CELLS} cells")
    if "cell" in d:
        choices = CELL_TYPES.get(m.shape)
        if choices is None:
            raise ConfigError("mesh.cell", f"is for shape = 'rectangle' or 'box', not "
                                           f"{m.shape!r}")
        m.cell = va.string(d["cell"], "mesh.cell", choices)
    if "origin" in d:
        m.origin = va.number_list(d["origin"], "mesh.origin", (1, 2, 3))
    if "coordinates" in d:
        m.coordinates = va.string(d["coordinates"], "mesh.coordinates", tuple(COORDINATES))
        shapes = COORDINATES[m.coordinates]
        if shapes is not None and m.shape not in shapes:
            raise ConfigError("mesh.coordinates", f"{m.coordinates!r} needs shape = "
                              f"{' or '.join(repr(s) for s in shapes)}, not {m.shape!r}")
        if shapes is not None and m.origin and m.origin[0] < 0:
            raise ConfigError("mesh.origin", f"the radial coordinate x starts at "
                              f"{m.origin[0]:g} < 0 (mesh.coordinates = {m.coordinates!r})")
    if "radius" in d:
        m.radius = va.number(d["radius"], "mesh.radius", positive=True)
    if "center" in d:
        m.center = va.number_list(d["center"], "mesh.center", (2, 3))
    if "cell_size" in d:
        m.cell_size = va.number(d["cell_size"], "mesh.cell_size", positive=True)
        if m.radius / m.cell_size > 400:
            raise ConfigError("mesh.cell_size", f"{m.cell_size} is too small for radius "
                                                f"{m.radius} (more than 400 cells per radius)")
    if m.shape == "file" and not m.file:
        raise ConfigError("mesh.file", "shape = 'file' needs mesh.file")
    if m.file and m.shape != "file":
        raise ConfigError("mesh.file", f"is given but mesh.shape = {m.shape!r} (use shape = 'file')")
    for tab in ("regions", "boundaries"):
        if tab in d:
            t = va.table(d[tab], f"mesh.{tab}")
            for k, v in t.items():
                va.string(v, f"mesh.{tab}.{k}")
            setattr(m, tab, dict(t))
    if "remove" in d:
        m.remove = va.string(d["remove"], "mesh.remove")
    return m


def _time(d: dict[str, Any]) -> Time:
    va.fields(Time, d, "time")
    t = Time()
    for k in ("end", "start"):
        if k in d:
            setattr(t, k, va.number(d[k], f"time.{k}"))
    if t.end <= t.start:
        raise ConfigError("time.end", f"must be after time.start ({t.start}), got {t.end}")
    for k in ("dt", "output_every", "dt_min", "dt_max", "rtol", "atol", "negative_tolerance"):
        if k in d:
            setattr(t, k, va.number(d[k], f"time.{k}", positive=True))
    if "max_failures" in d:
        t.max_failures = va.number(d["max_failures"], "time.max_failures", positive=True,
                                 integer=True)
        if t.max_failures > 1000:
            raise ConfigError("time.max_failures", f"at most 1000, got {t.max_failures}")
    if "scheme" in d:
        t.scheme = va.string(d["scheme"], "time.scheme", SCHEMES)
    if "adaptive" in d:
        t.adaptive = va.boolean(d["adaptive"], "time.adaptive")
    span = t.end - t.start
    if t.dt > span:
        t.dt = span
    if (span / t.dt > 10_000_000) and not t.adaptive:
        raise ConfigError("time.dt", f"{t.dt} needs more than 10^7 steps to reach time.end")
    if t.dt_max is not None and span / t.dt_max > 10_000_000:
        raise ConfigError("time.dt_max", f"{t.dt_max} needs more than 10^7 steps to reach "
                                         "time.end")
    # a step below the floating-point resolution of t would never advance the time
    scale = max(abs(t.start), abs(t.end))
    for k in ("dt", "dt_max"):
        step = getattr(t, k)
        if step is not None and step < 1000 * math.ulp(scale):
            raise ConfigError(f"time.{k}", f"{step:g} is too small to advance the time near "
                                           f"t = {scale:g} (floating-point resolution)")
    if t.output_every is not None and span / t.output_every > 100_000:
        raise ConfigError("time.output_every", "more than 100000 outputs requested")
    return t


def to_dict(cfg: Config, defaults: bool = True) -> dict[str, Any]:
    """The configuration as plain data; :func:`load_dict` reads it back.

    With ``defaults`` (``run.json``, checkpoints) every field is written; without, the
    fields that still hold their default are left out, as a TOML file leaves them out.
    ``None`` values are always left out.  Tuples and numpy arrays become lists and numpy
    scalars numbers, so that a config built in Python reads as its TOML file would.
    """
    return _plain(cfg, defaults)


def _plain(v: Any, defaults: bool) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        out = {}
        for f in dataclasses.fields(v):
            x = getattr(v, f.name)
            if x is None or (not defaults and _is_default(f, x)):
                continue
            out[f.name] = _plain(x, defaults)
        return out
    if isinstance(v, dict):
        return {k: _plain(x, defaults) for k, x in v.items() if x is not None}
    if isinstance(v, list | tuple):
        return [_plain(x, defaults) for x in v]
    if type(v).__module__ == "numpy":  # numpy arrays and scalars
        return _plain(v.tolist(), defaults)
    return copy.deepcopy(v)


def _is_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        return False
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # noqa: BLE001 - an odd user object is simply not a default
        return False


def validate(cfg: Config) -> Config:
    """Check a :class:`Config` exactly as the TOML loader checks a file.

    The config is written out as the table a TOML file would give (:func:`to_dict`
    without defaults) and read back by :func:`load_dict`, so a config built in Python
    passes the same checks, with the same messages, as its TOML file; the result is a
    new, normalised :class:`Config` (``time.dt`` at most the span, and so on).

    Raises:
        ConfigError: naming the first offending key.
    """
    if not isinstance(cfg, Config):
        raise ConfigError("", f"expected a tumorpde Config (tumorpde.load or "
                              f"tumorpde.model.objects.Config), got {type(cfg).__name__}")
    return load_dict(to_dict(cfg, defaults=False))


# --------------------------------------------------------------------- semantic checks
def check(cfg: Config) -> Spec:
    """Check names, expressions and units of a configuration.

    The config is first validated as the TOML loader validates a file (:func:`validate`,
    so a config built in Python is checked alike); ``Spec.config`` is that validated copy.
    The checks run in file order (names, units, parameters, knockouts, scalars and drugs,
    definitions, species, observables, outputs), so the first offending key is named.

    Raises:
        ConfigError: naming the first offending key.
    """
    cfg = validate(cfg)
    names = list(cfg.species)
    reserved = ex.RESERVED | set(ex.FUNCTIONS)
    for n in names:
        _check_identifier(f"species.{n}", n, "species names must be identifiers "
                                            "(letters, digits, '_')")
        if n in reserved:
            raise ConfigError(f"species.{n}", f"{n!r} is reserved in expressions")
    L = T = None
    if cfg.units is not None:
        L = un.parse_unit(cfg.units.length, "units.length", "[length]")
        T = un.parse_unit(cfg.units.time, "units.time", "[time]")
    params = _check_parameters(cfg, reserved, L, T)
    for ko in cfg.knockout:
        if ko not in cfg.species:
            raise ConfigError("knockout", f"unknown species {ko!r} (species: {', '.join(names)})")
    known = set(names) | set(params)
    for table, entries in (("scalars", cfg.scalars), ("drugs", cfg.drugs)):
        for k in entries:
            _check_identifier(f"{table}.{k}", k, "names must be identifiers")
            if k in reserved or k in known:
                raise ConfigError(f"{table}.{k}", f"{k!r} is reserved, a species, a parameter, "
                                                  "a scalar or a drug name")
            known.add(k)
    definitions = _check_definitions(cfg, reserved, known)
    field_syms = known | set(definitions)
    const_syms = set(params)
    regions_used: dict[str, str] = {}
    boundaries_used: set[str] = set()
    species = {name: _species_spec(cfg, i, name, s, field_syms, const_syms, set(definitions),
                                   regions_used, boundaries_used)
               for i, (name, s) in enumerate(cfg.species.items())}
    fields = tuple(k for k, v in cfg.parameters.items() if isinstance(v, Parameter) and v.field)
    global_syms = (set(params) - set(fields)) | set(cfg.scalars) | set(cfg.drugs)
    observables = {oname: _observable_spec(cfg, oname, ob, global_syms, field_syms)
                   for oname, ob in cfg.observables.items()}
    for f in cfg.output.fields or ():
        if f not in cfg.species:
            raise ConfigError("output.fields", f"unknown species {f!r}")
    spec = Spec(cfg, names, species, params, L, T, observables, regions_used, boundaries_used,
                definitions, held=tuple(species[k].index for k in dict.fromkeys(cfg.knockout)),
                fields=fields)
    spec.scalars = check_scalars(spec)
    spec.plan = check_therapies(spec, field_syms)
    check_units(spec)
    return spec


def _check_identifier(key: str, name: str, message: str) -> None:
    """A name of the config must be an identifier that does not start with ``__``."""
    if not _NAME.match(name) or name.startswith("__"):
        raise ConfigError(key, message)


def _check_parameters(cfg: Config, reserved: set[str], L: Any, T: Any) -> dict[str, tuple[float, Any]]:
    """Parameter name -> (value in the model's units, unit): names checked, quantities parsed."""
    have_units = cfg.units is not None
    params: dict[str, tuple[float, Any]] = {}
    for k, v in cfg.parameters.items():
        _check_identifier(f"parameters.{k}", k, "parameter names must be identifiers")
        if k in reserved or k in cfg.species:
            raise ConfigError(f"parameters.{k}", f"{k!r} is reserved or a species name")
        value = v.value if isinstance(v, Parameter) else v
        key = f"parameters.{k}.value" if isinstance(v, Parameter) else f"parameters.{k}"
        params[k] = un.canonical(*un.parse_quantity(value, key, have_units), L, T)
    return params


def _check_definitions(cfg: Config, reserved: set[str], known: set[str]) -> dict[str, TermSpec]:
    """The definitions, parsed and ordered so that each follows those it uses."""
    for k in cfg.definitions:
        dk = f"definitions.{k}"
        _check_identifier(dk, k, "definition names must be identifiers")
        if k in reserved or k in known:
            raise ConfigError(dk, f"{k!r} is reserved, a species or a parameter name")
    parsed = {k: ex.parse(text, f"definitions.{k}", known | set(cfg.definitions))
              for k, text in cfg.definitions.items()}
    return {k: TermSpec(f"definitions.{k}", expr=parsed[k]) for k in _dependency_order(parsed)}


def _species_spec(cfg: Config, index: int, name: str, s: Species, field_syms: set[str],
                  const_syms: set[str], definitions: set[str], regions_used: dict[str, str],
                  boundaries_used: set[str]) -> SpeciesSpec:
    """The checked terms of one species; records the regions and boundaries it names.

    ``const_syms`` are the parameters.  Initial values may use them, coordinates and
    definitions (whose species terms are taken as zero there); a Dirichlet value without a
    transfer sees the parameters and coordinates only.  A knocked-out species is held at
    zero (no initial value, sources or boundary input).
    """
    key = f"species.{name}"
    have_units = cfg.units is not None
    if s.units is not None and not have_units:
        raise ConfigError(f"{key}.units", "species units need a [units] table")
    unit = un.parse_unit(s.units, f"{key}.units") if s.units is not None else \
        (un.registry().dimensionless if have_units else None)
    diff = parse_term(s.diffusion, f"{key}.diffusion", field_syms) if s.diffuses else None
    if not s.diffuses and not _is_zero(s.diffusion):
        raise ConfigError(f"{key}.diffusion", "is given but the species has diffuses = false")
    from_data, from_image = initial_data(s), initial_image(s)
    initial = parse_term(0.0 if from_data or from_image else s.initial, f"{key}.initial",
                         const_syms | definitions)
    reaction = parse_term(s.reaction, f"{key}.reaction", field_syms)
    if reaction.regions:
        raise ConfigError(f"{key}.reaction", "expected an expression (use where() or region "
                                             "coefficients for region-dependent reactions)")
    taxis = []
    for j, t in enumerate(s.taxis):
        tk = f"{key}.taxis[{j}]"
        if t.toward not in cfg.species:
            raise ConfigError(f"{tk}.toward", f"unknown species {t.toward!r}")
        if t.toward == name:
            raise ConfigError(f"{tk}.toward", "a species cannot be its own taxis signal")
        taxis.append((t.toward, parse_term(t.sensitivity, f"{tk}.sensitivity", field_syms)))
    bcs: dict[str, dict[str, TermSpec]] = {}
    for bname, bc in s.boundary.items():
        bk = f"{key}.boundary.{bname}"
        boundaries_used.add(bname)
        bcs[bname] = {k: parse_term(getattr(bc, k), f"{bk}.{k}",
                                    const_syms if k == "value" and bc.transfer is None else field_syms)
                      for k in ("value", "flux", "transfer") if getattr(bc, k) is not None}
    for term in [diff, initial]:
        if term is not None and term.regions:
            for r in set(term.regions) - {"default"}:
                regions_used.setdefault(r, f"{term.key}.{r}")
    if from_data is not None:
        t0 = from_data[1] if from_data[1] is not None else cfg.time.start
        from_data = (from_data[0], t0)
    if name in cfg.knockout:
        from_data = from_image = None
        initial = TermSpec(f"{key}.initial", expr=ex.Num(0.0))
        reaction = TermSpec(f"{key}.reaction", expr=ex.Num(0.0))
        taxis, bcs = [], {}
    if isinstance(s.diffusion, int | float) and s.diffusion < 0:
        raise ConfigError(f"{key}.diffusion", f"must not be negative, got {s.diffusion}")
    if isinstance(s.diffusion, dict):
        for r, v in s.diffusion.items():
            if isinstance(v, int | float) and v < 0:
                raise ConfigError(f"{key}.diffusion.{r}", f"must not be negative, got {v}")
    return SpeciesSpec(name, index, diff, reaction, initial, taxis, bcs, unit, from_data,
                       initial_image=from_image)


def _observable_spec(cfg: Config, oname: str, ob: Observable, global_syms: set[str],
                     field_syms: set[str]) -> ObservableSpec:
    """The checked expression of one observable (value observables see no fields)."""
    ok = f"observables.{oname}"
    if not _NAME.match(oname):
        raise ConfigError(ok, "observable names must be identifiers")
    if oname == "t" or (oname.startswith("total_") and oname[6:] in cfg.species) or \
            oname in cfg.scalars:
        raise ConfigError(ok, "clashes with a built-in column or a scalar")
    kind = "integral" if ob.integral is not None else \
        "maximum" if ob.maximum is not None else \
        "minimum" if ob.minimum is not None else \
        "radius" if ob.radius is not None else "value"
    if kind == "radius" and cfg.mesh.shape not in ("interval", "file"):
        raise ConfigError(f"{ok}.radius", f"a radius observable needs an interval mesh "
                                          f"(mesh.shape is {cfg.mesh.shape!r})")
    expr = parse_term(getattr(ob, kind), f"{ok}.{kind}" if not isinstance(ob, str) else ok,
                      global_syms if kind == "value" else field_syms)
    if kind == "value" and ex.symbols_of(expr.expr) & set(ex.COORDINATES):
        raise ConfigError(f"{ok}.value", "a value observable is an expression of scalars, "
                                         "drugs, parameters and t (no coordinates)")
    per = parse_term(ob.per, f"{ok}.per", field_syms) if ob.per is not None else None
    if kind == "radius":
        above = ob.above is not None
        return ObservableSpec(kind, expr, per, ob.cumulative,
                              float(ob.above if above else ob.below), above)
    return ObservableSpec(kind, expr, per, ob.cumulative)


def _dependency_order(parsed: dict[str, ex.Expr]) -> list[str]:
    """Definitions ordered so that each comes after those it uses (file order otherwise).

    Raises:
        ConfigError: A definition uses itself, directly or through others.
    """
    uses = {k: ex.symbols_of(e) & set(parsed) for k, e in parsed.items()}
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done

    def visit(k: str, path: list[str]) -> None:
        if state.get(k) == 2:
            return
        if state.get(k) == 1:
            cycle = path[path.index(k):] + [k]
            raise ConfigError(f"definitions.{cycle[0]}", "refers to itself through "
                                                         f"{' -> '.join(cycle)}")
        state[k] = 1
        for dep in sorted(uses[k], key=list(parsed).index):
            visit(dep, path + [k])
        state[k] = 2
        order.append(k)

    for k in parsed:
        visit(k, [])
    return order


def _is_zero(v: Any) -> bool:
    return isinstance(v, int | float) and v == 0

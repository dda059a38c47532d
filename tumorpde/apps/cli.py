"""Command line: ``tumorpde run | resume | check | list | init | doc | calibrate``.

Bad input ends with exit status 2 and one line ``tumorpde: error: <key>: <problem>``
on every rank's behalf (printed once, by rank 0); a failed run ends with status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from tumorpde.errors import ConfigError, SolverError, ToolError
from tumorpde.signals import Interrupted
from tumorpde.version import __version__

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError("", f"{message} (see `tumorpde {self.prog.split()[-1]} --help`)"
                          if " " in self.prog else f"{message} (see `tumorpde --help`)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tumorpde`` command (every sub-command)."""
    p = _Parser(prog="tumorpde", description="Reaction-diffusion-taxis models of the tumour "
                "microenvironment with DOLFINx/PETSc.")
    p.add_argument("--version", action="version", version=f"tumorpde {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    r = sub.add_parser("run", help="run a simulation")
    r.add_argument("config", help="TOML file, or the name of a bundled example (tumorpde list)")
    r.add_argument("-o", "--output", metavar="DIR", help="output directory (default out/NAME)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value: dotted TOML key, TOML value (repeatable)")
    r.add_argument("--knockout", action="append", default=[], metavar="SPECIES",
                   help="hold a species at zero and remove its sources (repeatable)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings only")
    r.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    c = sub.add_parser("check", help="validate a config (mesh, names, expressions, units)")
    c.add_argument("config")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("--knockout", action="append", default=[], metavar="SPECIES")
    c.add_argument("--debug", action="store_true")
    sub.add_parser("list", help="list the bundled examples")
    d = sub.add_parser("doc", help="write Markdown documentation of a model (equations, "
                       "parameters with sources, observables)")
    d.add_argument("config")
    d.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    rs = sub.add_parser("resume", help="continue an interrupted run from its last checkpoint")
    rs.add_argument("directory", metavar="DIR", help="output directory of the run")
    rs.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings only")
    rs.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    i = sub.add_parser("init", help="write a bundled example config to a file")
    i.add_argument("name", help="example name (tumorpde list)")
    i.add_argument("path", nargs="?", help="destination (default NAME.toml)")
    i.add_argument("--force", action="store_true", help="overwrite an existing file")
    _add_tool_parsers(sub)
    return p


# ----------------------------------------------------------------------------- tools
# render, plot, report, mesh and export work on files, on rank 0 (the other ranks wait for its
# verdict); sweep runs an ensemble.  Each is implemented in its own module.
TOOL_COMMANDS = ("render", "plot", "report", "mesh", "sweep", "export")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def _add_tool_parsers(sub: argparse._SubParsersAction) -> None:
    # --- tumorpde render DIR (tumorpde/apps/render.py)
    r = sub.add_parser("render", help="PNG snapshots, animations and a ParaView state file of a "
                       "run (ParaView's pvbatch)")
    r.add_argument("dir", metavar="DIR", help="output directory of `tumorpde run`")
    r.add_argument("--field", action="extend", nargs="+", metavar="NAME",
                   help="fields to render (default: all)")
    when = r.add_mutually_exclusive_group()
    when.add_argument("--time", type=float, metavar="T", help="output time (default: the last)")
    when.add_argument("--animate", action="store_true",
                      help="one GIF per field over all output times")
    r.add_argument("-o", "--output", metavar="OUTDIR", help="default DIR/render")
    r.add_argument("--size", type=_size, default=(800, 640), metavar="WxH",
                   help="image size in pixels (default 800x640)")
    r.add_argument("--fps", type=float, default=4.0, help="frames per second of animations")
    r.add_argument("--no-state", action="store_true", help="do not write fields.pvsm")
    r.add_argument("--pvbatch", metavar="PATH",
                   help="ParaView's pvbatch (default: $TUMORPDE_PVBATCH, then PATH)")
    # --- tumorpde plot DIR (tumorpde/apps/plot.py)
    pl = sub.add_parser("plot", help="figures of the observables over time (matplotlib)")
    pl.add_argument("dir", metavar="DIR", help="output directory of `tumorpde run`")
    pl.add_argument("-o", "--output", metavar="OUTDIR", help="default DIR/plots")
    pl.add_argument("--column", action="extend", nargs="+", metavar="NAME",
                    help="columns of observables.csv to plot (default: all)")
    pl.add_argument("--format", default="png", choices=["png", "svg", "pdf"])
    pl.add_argument("--dpi", type=int, default=120)
    # --- tumorpde report DIR (tumorpde/apps/report.py)
    rp = sub.add_parser("report", help="one-page HTML or Markdown summary of a run")
    rp.add_argument("dir", metavar="DIR", help="output directory of `tumorpde run`")
    rp.add_argument("-o", "--output", metavar="FILE",
                    help="FILE.html or FILE.md (default DIR/report.html)")
    rp.add_argument("--no-snapshots", action="store_true", help="no ParaView snapshots")
    rp.add_argument("--pvbatch", metavar="PATH",
                    help="ParaView's pvbatch (default: $TUMORPDE_PVBATCH, then PATH)")
    # --- tumorpde mesh NAME (tumorpde/apps/meshgen.py)
    m = sub.add_parser("mesh", help="generate a bundled geometry or .geo file, or import a mesh "
                       "file, as .msh with named regions and boundaries")
    m.add_argument("name", metavar="NAME", nargs="?",
                   help="bundled geometry (--list), gmsh .geo file, or mesh file (meshio formats)")
    m.add_argument("-o", "--output", metavar="FILE", help="the .msh to write (default NAME.msh)")
    m.add_argument("--list", action="store_true", help="list the bundled geometries and their "
                   "parameters")
    m.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                   help="a parameter of the .geo source (repeatable)")
    m.add_argument("--region", action="append", default=[], metavar="TAG=NAME",
                   help="name a cell tag of an imported mesh (repeatable)")
    m.add_argument("--boundary", action="append", default=[], metavar="TAG=NAME",
                   help="name a facet tag of an imported mesh (repeatable)")
    m.add_argument("--outer", metavar="NAME",
                   help="name the boundary facets an imported mesh leaves untagged")
    m.add_argument("--tag-data", metavar="KEY", help="cell data of an imported mesh that holds the "
                   "tags (default: gmsh:physical, medit:ref, cell_tags, ...)")
    m.add_argument("--from-image", metavar="MASK", help="mesh the labelled voxels of a NIfTI "
                   "label image (.nii, .nii.gz) in its physical coordinates, smooth boundaries; "
                   "-o OUT.msh or OUT.xdmf")
    m.add_argument("--label", action="append", default=[], metavar="N",
                   help="with --from-image: a label to mesh (repeatable; default: every non-zero "
                   "label); cells get region label<N> or --region N=NAME")
    m.add_argument("--size", type=float, metavar="H", help="with --from-image: cell size in the "
                   "image's unit (default: the mean voxel edge)")
    # --- tumorpde sweep CONFIG (tumorpde/apps/sweep.py)
    sw = sub.add_parser("sweep", help="run an ensemble over varied config values and compute "
                        "sensitivity indices (SALib)")
    sw.add_argument("config", help="TOML file, or the name of a bundled example")
    sw.add_argument("--vary", action="append", default=[], metavar="KEY=LOW:HIGH",
                    help="a varied value: dotted key, range in the value's units (or append one: "
                    "'KEY=LOW:HIGH UNIT'); KEY alone uses the parameter's range (repeatable)")
    sw.add_argument("--samples", type=int, required=True, metavar="N",
                    help="lhs: N runs; sobol: N (a power of 2) x (keys + 2) runs; morris: N "
                    "trajectories, N x (keys + 1) runs")
    sw.add_argument("--method", default="lhs", choices=["lhs", "sobol", "morris"])
    sw.add_argument("-o", "--output", metavar="DIR", help="default out/sweep-NAME")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value in every member (repeatable)")
    sw.add_argument("--knockout", action="append", default=[], metavar="SPECIES")
    sw.add_argument("--observable", action="append", default=[], metavar="NAME",
                    help="observables in the figure (default: the config's [observables])")
    sw.add_argument("--seed", type=int, default=0, help="seed of the sample and the bootstrap")
    sw.add_argument("-j", "--jobs", type=int, default=1,
                    help="members run at a time as processes (without mpiexec)")
    sw.add_argument("--ranks-per-member", type=int, default=1, metavar="K",
                    help="under mpiexec: MPI ranks per member (default 1)")
    sw.add_argument("--debug", action="store_true")
    # --- tumorpde calibrate CONFIG (tumorpde/apps/calibrate.py)
    ca = sub.add_parser("calibrate", help="fit parameters to data (least squares with exact "
                        "derivatives of the run), with intervals and forecasts")
    ca.add_argument("config", help="TOML file, or the name of a bundled example")
    ca.add_argument("--data", action="append", default=[], metavar="FILE",
                    help="CSV data: t,x[,y,z],field,value[,sigma] or t,observable,value[,sigma] "
                    "(repeatable; default: [calibration] data)")
    ca.add_argument("--fit", action="append", default=[], metavar="KEY[=LOW:HIGH]",
                    help="a fitted parameter with its bounds (default: [calibration] fit, then "
                    "the parameter's range) (repeatable)")
    ca.add_argument("--until", type=float, metavar="T",
                    help="fit only data with t <= T; later rows are forecast")
    ca.add_argument("--method", choices=["lsq", "mcmc"], help="default: [calibration] method "
                    "or lsq")
    ca.add_argument("--evaluate", action="store_true",
                    help="objective, gradient and intervals at the config's values, no fit")
    ca.add_argument("--starts", type=int, metavar="N",
                    help="least-squares starts: the config's values, then a Latin hypercube")
    ca.add_argument("--seed", type=int, default=0, help="seed of the Latin hypercube")
    ca.add_argument("--walkers", type=int, metavar="N", help="mcmc: walkers (default "
                    "max(2k+2, 8) for k parameters)")
    ca.add_argument("--steps", type=int, metavar="N", help="mcmc: steps per walker (default "
                    "200; a rerun in the same directory continues to N)")
    ca.add_argument("--burn", type=int, metavar="N", help="mcmc: steps discarded (default half)")
    ca.add_argument("--ranks-per-chain", type=int, default=1, metavar="K",
                    help="mcmc under mpiexec: ranks per group evaluating walkers (default 1)")
    ca.add_argument("--profile", type=int, default=0, metavar="N",
                    help="profile likelihood of each parameter on N points (identifiability; "
                    "95 %% interval from the profile)")
    ca.add_argument("--regularise", action="append", default=[], metavar="KEY=ALPHA",
                    help="smoothness penalty alpha/2 int |grad p|^2 of a fitted field "
                    "parameter (repeatable)")
    ca.add_argument("-o", "--output", metavar="DIR", help="default out/calibrate-NAME")
    ca.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value (repeatable)")
    ca.add_argument("-q", "--quiet", action="store_true")
    ca.add_argument("--debug", action="store_true")
    # --- tumorpde export DIR (tumorpde/apps/export.py)
    ex = sub.add_parser("export", help="fields of a run as NIfTI images on the grid of a reference "
                        "image (with Dice, volumes and totals against an observed image)")
    ex.add_argument("dir", metavar="DIR", help="output directory of `tumorpde run`")
    ex.add_argument("--nifti", action="store_true",
                    help="write NIfTI (.nii.gz) files (the only format; required)")
    ex.add_argument("--like", required=True, metavar="REF.nii.gz",
                    help="reference image: the files get its shape and affine")
    ex.add_argument("--field", action="extend", nargs="+", metavar="NAME",
                    help="fields to export (default: all)")
    ex.add_argument("--time", action="extend", nargs="+", type=float, metavar="T",
                    help="output times to export (default: all)")
    ex.add_argument("-o", "--output", metavar="OUTDIR", help="default DIR/nifti")
    ex.add_argument("--observed", metavar="OBS.nii.gz",
                    help="compare each exported map with this image (on the grid of --like); "
                    "writes OUTDIR/metrics.csv")
    ex.add_argument("--threshold", type=float, metavar="X", default=None,
                    help="voxels above X are tumour, for Dice and volumes (default 0.1)")
    ex.add_argument("--mask", metavar="M.nii.gz",
                    help="compare only the non-zero voxels of this image (on the grid of --like)")


def _on_root(command: str, work: Callable[[], list[str]]) -> int:
    """Run ``work`` on rank 0, print its lines; every rank ends with rank 0's verdict."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    verdict: tuple[str, str, str] | None = None
    lines: list[str] = []
    if comm.rank == 0:
        try:
            lines = work()
        except ConfigError as exc:
            verdict = ("config", exc.key, exc.message)
        except ToolError as exc:
            verdict = ("tool", "", str(exc))
    verdict = comm.bcast(verdict, root=0) if comm.size > 1 else verdict
    if verdict is None:
        for line in lines:
            _say(line)
        return 0
    if verdict[0] == "config":
        raise ConfigError(verdict[1], verdict[2])
    _say(f"tumorpde: {command} failed: {verdict[2]}", err=True)
    return EXIT_FAILED


def _cmd_tool(args: argparse.Namespace) -> int:
    if args.command == "render":
        from tumorpde.apps.render import render

        def work() -> list[str]:
            res = render(args.dir, args.field, args.time, args.animate, args.output, args.pvbatch,
                         args.size, not args.no_state, args.fps)
            files = [*res.images, *res.animations.values(), *([res.state] if res.state else [])]
            return [f"tumorpde: wrote {len(files)} files -> {res.outdir}"]
        return _on_root(args.command, work)
    if args.command == "plot":
        from tumorpde.apps.plot import plot

        def work() -> list[str]:
            files = plot(args.dir, args.output, args.column, args.format, args.dpi)
            return [f"tumorpde: wrote {f}" for f in files]
        return _on_root(args.command, work)
    if args.command == "report":
        from tumorpde.apps.report import report

        def work() -> list[str]:
            res = report(args.dir, args.output, not args.no_snapshots, args.pvbatch)
            return ([f"tumorpde: {res.note}"] if res.note else []) + [f"tumorpde: wrote {res.path}"]
        return _on_root(args.command, work)
    if args.command == "mesh":
        from tumorpde.apps import meshgen

        def work() -> list[str]:
            if args.list:
                return [f"{name:<15} {path}\n{'':<15} parameters: " + ", ".join(
                        f"{k}={v}" for k, v in meshgen.geo_parameters(path).items())
                        for name, path in meshgen.bundled().items()]
            if args.from_image:
                from tumorpde.apps.imagemesh import mesh_from_image

                for opt, given in (("NAME", args.name), ("--set", args.set),
                                   ("--boundary", args.boundary), ("--outer", args.outer),
                                   ("--tag-data", args.tag_data)):
                    if given:
                        raise ConfigError(opt, "does not apply to --from-image (its boundary is "
                                               "'outer', its regions the labels)")
                res = mesh_from_image(args.from_image, args.output, args.label, args.size,
                                      args.region)
                return [f"tumorpde: {res.line()}"]
            for opt, given in (("--label", args.label), ("--size", args.size is not None)):
                if given:
                    raise ConfigError(opt, "applies to --from-image")
            if not args.name:
                raise ConfigError("", "give a NAME (a bundled geometry, .geo or mesh file) or "
                                      "--list")
            res = meshgen.make_mesh(args.name, args.output, args.set, args.region, args.boundary,
                                    args.outer, args.tag_data)
            return [f"tumorpde: {res.line()}"]
        return _on_root(args.command, work)
    if args.command == "export":
        from tumorpde.apps.export import DEFAULT_THRESHOLD, export_nifti

        def work() -> list[str]:
            if not args.nifti:
                raise ConfigError("--nifti", "give the output format: --nifti (NIfTI on the grid "
                                             "of --like is the only format export writes)")
            if args.threshold is not None and args.observed is None:
                raise ConfigError("--threshold", "applies to the comparison with --observed: "
                                                 "give --observed too")
            res = export_nifti(args.dir, args.like, args.field, args.time, args.output,
                               args.observed, DEFAULT_THRESHOLD if args.threshold is None
                               else args.threshold, args.mask)
            return [f"tumorpde: {res.line()}"]
        return _on_root(args.command, work)
    if args.command == "sweep":
        from tumorpde.apps.sweep import sweep

        res = sweep(args.config, args.vary, args.samples, args.method, args.output, args.set,
                    args.knockout, args.observable, args.seed, args.jobs, args.ranks_per_member)
        if _rank() != 0:
            return 0
        if res.interrupted:
            done = len(res.members) - len(res.failed)
            _say(f"tumorpde: interrupted: sweep stopped with {done} of {len(res.members)} members "
                 f"completed; see {res.outdir / 'results.csv'}", err=True)
            return 130
        if res.failed:
            first = res.failed[0]
            _say(f"tumorpde: sweep failed: {len(res.failed)} of {len(res.members)} members failed "
                 f"(member {first.index}: {first.message}); see {res.outdir / 'results.csv'}",
                 err=True)
            return EXIT_FAILED
        _say(f"tumorpde: sweep of {len(res.members)} members -> {res.outdir} "
             f"({', '.join(p.name for p in res.files)})")
        return 0
    raise AssertionError(args.command)  # pragma: no cover


def _rank() -> int:
    from mpi4py import MPI

    return MPI.COMM_WORLD.rank


def _say(msg: str, err: bool = False) -> None:
    if _rank() == 0:
        print(msg, file=sys.stderr if err else sys.stdout, flush=True)


def _examples() -> dict[str, str]:
    from tumorpde.model.config import EXAMPLES_DIR

    out = {}
    for f in sorted(EXAMPLES_DIR.glob("*.toml")):
        title = ""
        try:
            title = str(tomllib.loads(f.read_text()).get("title", ""))
        except tomllib.TOMLDecodeError:  # pragma: no cover - bundled files are valid
            pass
        out[f.stem] = title
    return out


def _cmd_list() -> int:
    ex = _examples()
    width = max(len(n) for n in ex) if ex else 0
    for name, title in ex.items():
        _say(f"{name:<{width}}  {title}")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    ex = _examples()
    if args.name not in ex:
        raise ConfigError("", f"no bundled example {args.name!r} (available: {', '.join(ex)})")
    from tumorpde.model.config import EXAMPLES_DIR

    dest = Path(args.path or f"{args.name}.toml")
    if dest.is_dir():
        dest = dest / f"{args.name}.toml"
    if dest.exists() and not args.force:
        raise ConfigError("", f"{dest} exists (use --force to overwrite)")
    if _rank() == 0:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text((EXAMPLES_DIR / f"{args.name}.toml").read_text())
        except OSError as exc:
            raise ConfigError("", f"cannot write {dest}: {exc.strerror}") from None
    _say(f"wrote {dest}")
    return 0


def _load(args: argparse.Namespace):  # noqa: ANN202
    from tumorpde.model.config import find_config, load

    path = find_config(args.config)
    cfg = load(path, args.set)
    for name in getattr(args, "knockout", []):
        if name not in cfg.knockout:
            cfg.knockout.append(name)
    return path, cfg


def _cmd_doc(args: argparse.Namespace) -> int:
    from tumorpde.apps.modeldoc import model_markdown
    from tumorpde.model.config import find_config, load

    path = find_config(args.config)
    text = model_markdown(load(path), path.stem)
    if args.output:
        if _rank() == 0:
            try:
                Path(args.output).write_text(text)
            except OSError as exc:
                raise ConfigError("--output", f"cannot write {args.output}: {exc.strerror}") \
                    from None
        _say(f"wrote {args.output}")
    else:
        _say(text.rstrip("\n"))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    from tumorpde.simulation import prepare
    from tumorpde.time.coupling import Couplings

    path, cfg = _load(args)
    spec, domain, disc = prepare(cfg, MPI.COMM_WORLD)
    disc.set_initial()
    Couplings(disc)  # surviving fractions and the regions therapies aim at
    _say(f"{path}: ok — {len(spec.names)} species ({', '.join(spec.names)}), "
         f"{domain.num_cells_global()} cells, "
         f"{disc.V.dofmap.index_map.size_global * disc.n} unknowns, P{disc.degree}, "
         f"{cfg.time.scheme}, t = {cfg.time.start} .. {cfg.time.end}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    from tumorpde.simulation import run

    path, cfg = _load(args)
    outdir = Path(args.output) if args.output else Path("out") / path.stem
    if outdir.exists() and not outdir.is_dir():
        raise ConfigError("--output", f"{outdir} exists and is not a directory")
    res = run(cfg, outdir, MPI.COMM_WORLD, argv=sys.argv, progress=False if args.quiet else None)
    summary = ", ".join(f"{k}={v:.6g}" for k, v in list(res.final.items())[:6])
    _say(f"tumorpde: completed t={res.t:.6g} in {res.steps} steps -> {outdir} ({summary})")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from tumorpde.apps.calibrate import run_calibration

    if args.starts is not None and args.starts < 1:
        raise ConfigError("--starts", f"must be at least 1, got {args.starts}")
    if args.profile < 0 or args.profile == 1:
        raise ConfigError("--profile", f"needs 0 (none) or at least 2 points, got {args.profile}")
    res = run_calibration(args.config, args.data, args.fit, until=args.until,
                          method=args.method, evaluate=args.evaluate, output=args.output,
                          overrides=args.set, starts=args.starts, seed=args.seed,
                          progress=False if args.quiet else None,
                          regularise=args.regularise, profile=args.profile,
                          walkers=args.walkers, steps=args.steps, burn=args.burn,
                          ranks_per_chain=args.ranks_per_chain)
    fit = res.fit
    if fit.status == "failed":
        _say(f"tumorpde: calibration failed: {fit.message}; see "
             f"{res.outdir / 'calibration.json'}", err=True)
        return EXIT_FAILED
    est = ", ".join(
        f"{p.key}: field of mean {e:.6g} in [{fit.fields[p.name].min() / p.scale:.4g}, "
        f"{fit.fields[p.name].max() / p.scale:.4g}]" if p.name in fit.fields else
        f"{p.key}={e:.6g} [{lo:.4g}, {hi:.4g}]"
        for p, e, (lo, hi) in zip(fit.parameters, fit.estimate, fit.ci95, strict=True))
    _say(f"tumorpde: calibration {fit.status}: objective {fit.objective:.6g} on {fit.n_data} "
         f"data rows, {est} -> {res.outdir}")
    loose = [p.key for p, ok in zip(fit.parameters, fit.identified(), strict=True)
             if p.name not in fit.fields and not ok]
    if loose:
        _say(f"tumorpde: note: the 95 % intervals of {', '.join(loose)} reach past their bounds "
             "(or are undefined): these data do not identify them (`--profile N` gives "
             "profile-likelihood intervals)")
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    from tumorpde.simulation import resume

    outdir = Path(args.directory)
    res = resume(outdir, MPI.COMM_WORLD, argv=sys.argv, progress=False if args.quiet else None)
    summary = ", ".join(f"{k}={v:.6g}" for k, v in list(res.final.items())[:6])
    _say(f"tumorpde: completed t={res.t:.6g} in {res.steps} steps -> {outdir} ({summary})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tumorpde`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else
                            logging.INFO, format="tumorpde: %(message)s")
        if _rank() != 0:
            logging.getLogger("tumorpde").setLevel(logging.ERROR)
        if args.command is None:
            build_parser().print_help()
            return EXIT_BAD_INPUT
        if args.command == "list":
            return _cmd_list()
        if args.command == "init":
            return _cmd_init(args)
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "doc":
            return _cmd_doc(args)
        if args.command == "resume":
            return _cmd_resume(args)
        if args.command in TOOL_COMMANDS:
            return _cmd_tool(args)
        if args.command == "calibrate":
            return _cmd_calibrate(args)
        return _cmd_run(args)
    except ConfigError as exc:
        _say(f"tumorpde: error: {exc}", err=True)
        return EXIT_BAD_INPUT
    except SolverError as exc:
        _say(f"tumorpde: run failed: {exc}", err=True)
        return EXIT_FAILED
    except Interrupted as exc:
        _say(f"tumorpde: interrupted: {exc}", err=True)
        return exc.exit_status
    except KeyboardInterrupt:
        _say("tumorpde: interrupted", err=True)
        return 130
    except SystemExit as exc:  # argparse --help / --version
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - internal error: one line, all ranks ended
        if debug:
            raise
        print(f"tumorpde: internal error on rank {_rank()}: {type(exc).__name__}: {exc} "
              "(rerun with --debug for a traceback)", file=sys.stderr, flush=True)
        from mpi4py import MPI

        if MPI.COMM_WORLD.size > 1:
            # the launcher forwards each rank's stderr through a pipe: give it a moment to
            # pass the line on before MPI_Abort makes it kill every process (under load the
            # line was otherwise lost)
            time.sleep(0.5)
            MPI.COMM_WORLD.Abort(EXIT_FAILED)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

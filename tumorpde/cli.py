"""Command line: ``tumorpde run | resume | check | list | init | doc``.

Bad input ends with exit status 2 and one line ``tumorpde: error: <key>: <problem>``
on every rank's behalf (printed once, by rank 0); a failed run ends with status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from pathlib import Path

from tumorpde import __version__
from tumorpde.errors import ConfigError, SolverError
from tumorpde.signals import Interrupted

__all__ = ["main"]

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError("", f"{message} (see `tumorpde {self.prog.split()[-1]} --help`)"
                          if " " in self.prog else f"{message} (see `tumorpde --help`)")


def _parser() -> argparse.ArgumentParser:
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
    return p


def _rank() -> int:
    from mpi4py import MPI

    return MPI.COMM_WORLD.rank


def _say(msg: str, err: bool = False) -> None:
    if _rank() == 0:
        print(msg, file=sys.stderr if err else sys.stdout, flush=True)


def _examples() -> dict[str, str]:
    from tumorpde.config import EXAMPLES_DIR

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
    from tumorpde.config import EXAMPLES_DIR

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
    from tumorpde.config import find_config, load

    path = find_config(args.config)
    cfg = load(path, args.set)
    for name in getattr(args, "knockout", []):
        if name not in cfg.knockout:
            cfg.knockout.append(name)
    return path, cfg


def _cmd_doc(args: argparse.Namespace) -> int:
    from tumorpde.config import find_config, load
    from tumorpde.modeldoc import model_markdown

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

    path, cfg = _load(args)
    spec, domain, disc = prepare(cfg, MPI.COMM_WORLD)
    disc.set_initial()
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
    summary = ", ".join(f"{k}={v:.6g}" for k, v in list(res.observables.items())[:6])
    _say(f"tumorpde: completed t={res.t:.6g} in {res.steps} steps -> {outdir} ({summary})")
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    from tumorpde.simulation import resume

    outdir = Path(args.directory)
    res = resume(outdir, MPI.COMM_WORLD, argv=sys.argv, progress=False if args.quiet else None)
    summary = ", ".join(f"{k}={v:.6g}" for k, v in list(res.observables.items())[:6])
    _say(f"tumorpde: completed t={res.t:.6g} in {res.steps} steps -> {outdir} ({summary})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tumorpde`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = _parser().parse_args(argv)
        logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else
                            logging.INFO, format="tumorpde: %(message)s")
        if _rank() != 0:
            logging.getLogger("tumorpde").setLevel(logging.ERROR)
        if args.command is None:
            _parser().print_help()
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
            MPI.COMM_WORLD.Abort(EXIT_FAILED)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

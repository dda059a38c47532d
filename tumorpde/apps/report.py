"""A one-page summary of a run (``tumorpde report``).

Gathers what ``tumorpde run`` wrote into one page: the run's status, times,
counters and command line; the final observables with their descriptions; the
figures of :mod:`tumorpde.apps.plot`; ParaView snapshots of every field at the last
output time (:mod:`tumorpde.apps.render`, when ``pvbatch`` is available); the model's
species and parameters and the resolved configuration; the versions of the
numerical stack from ``run.json``.

HTML (the default, ``DIR/report.html``) embeds its images, so the page is one
file to archive or send; Markdown (``-o FILE.md``) links to images written
beside it in ``FILE_files/``.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tumorpde.apps.plot import observable_columns, plot
from tumorpde.errors import ConfigError, ToolError
from tumorpde.io.rundir import read_info
from tumorpde.io.runinfo import MeshInfo, RunInfo

__all__ = ["report", "ReportResult"]

log = logging.getLogger("tumorpde")


@dataclass
class ReportResult:
    """What :func:`report` wrote.

    Attributes:
        path: The report.
        figures: Observable figures (for HTML: embedded, and the files removed).
        snapshots: ParaView snapshots ([] without ParaView; for HTML: embedded likewise).
        note: Why there are no snapshots (or "").
    """

    path: Path
    figures: list[Path] = field(default_factory=list)
    snapshots: list[Path] = field(default_factory=list)
    note: str = ""


def _clean(v: Any) -> Any:
    """Drop None values (not representable in TOML) recursively."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_clean(x) for x in v if x is not None]
    return v


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return str(v)


def _seconds(s: Any) -> str:
    if not isinstance(s, int | float):
        return "?"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


class _Page:
    """Minimal writer of the same content as HTML or Markdown."""

    def __init__(self, fmt: str, embed: Callable[[Path], str]) -> None:
        self.fmt = fmt
        self.embed = embed
        self.parts: list[str] = []

    def esc(self, s: Any) -> str:
        s = _fmt(s)
        return html.escape(s) if self.fmt == "html" else s.replace("|", "\\|").replace("\n", " ")

    def heading(self, level: int, text: str) -> None:
        if self.fmt == "html":
            self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        else:
            self.parts.append(f"{'#' * level} {text}\n")

    def para(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>" if self.fmt == "html" else text + "\n")

    def table(self, header: list[str], rows: list[list[Any]], code_first: bool = False) -> None:
        if not rows:
            return
        if self.fmt == "html":
            out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                   + "</tr></thead><tbody>"]
            for r in rows:
                cells = [f"<code>{self.esc(r[0])}</code>" if code_first else self.esc(r[0])]
                cells += [self.esc(c) for c in r[1:]]
                out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            out.append("</tbody></table>")
            self.parts.append("\n".join(out))
        else:
            out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for r in rows:
                first = f"`{self.esc(r[0])}`" if code_first else self.esc(r[0])
                out.append("| " + " | ".join([first] + [self.esc(c) for c in r[1:]]) + " |")
            self.parts.append("\n".join(out) + "\n")

    def images(self, paths: list[Path], width: str = "100%") -> None:
        if self.fmt == "html":
            imgs = "".join(f'<figure><img src="{self.embed(p)}" alt="{html.escape(p.stem)}" '
                           f'style="width:{width}"><figcaption>{html.escape(p.stem)}</figcaption>'
                           "</figure>" for p in paths)
            self.parts.append(f'<div class="grid">{imgs}</div>' if width != "100%" else imgs)
        else:
            self.parts.append("\n".join(f"![{p.stem}]({self.embed(p)})" for p in paths) + "\n")

    def details(self, summary: str, body: str, lang: str = "") -> None:
        if self.fmt == "html":
            self.parts.append(f"<details><summary>{html.escape(summary)}</summary><pre>"
                              f"{html.escape(body)}</pre></details>")
        else:
            self.parts.append(f"<details><summary>{summary}</summary>\n\n```{lang}\n{body}\n```\n\n"
                              "</details>\n")

    def raw_details_start(self, summary: str) -> None:
        self.parts.append(f"<details><summary>{html.escape(summary)}</summary>\n"
                          if self.fmt == "html" else f"<details><summary>{summary}</summary>\n")

    def raw_details_end(self) -> None:
        self.parts.append("</details>\n")


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #d8d8d8;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f5f8}code{font-size:.95em}pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.85em}
figure{margin:.4em 0}figcaption{font-size:.85em;color:#555;text-align:center}
.grid{display:flex;flex-wrap:wrap;gap:.4em}.grid figure{flex:0 0 auto}
.status-completed{color:#1a7f37}.status-failed,.status-interrupted{color:#b42318}
.status-running{color:#9a6700}
"""


def report(rundir: str | Path, output: str | Path | None = None, snapshots: bool = True,
           pvbatch: str | None = None, timeout: float | None = None) -> ReportResult:
    """Write a one-page report of a run.

    Args:
        rundir: Output directory of ``tumorpde run``.
        output: Report file, ``.html`` or ``.md`` (default ``rundir/report.html``).
        snapshots: Render ParaView snapshots when ``pvbatch`` is available.
        pvbatch: pvbatch executable (an explicit one that is missing is an error;
            otherwise a missing ParaView only leaves the snapshots out).
        timeout: Seconds before ParaView is stopped.

    Raises:
        ConfigError: No run there, bad output name, or the given ``pvbatch`` is missing.
    """
    rundir = Path(rundir)
    if not rundir.is_dir():
        raise ConfigError("", f"run directory {str(rundir)!r} not found")
    calibration = None  # a `tumorpde calibrate` directory: its fit/ run and calibration.json
    if (rundir / "calibration.json").is_file() and (rundir / "fit").is_dir():
        calibration, rundir = rundir, rundir / "fit"
    elif rundir.name == "fit" and (rundir.parent / "calibration.json").is_file():
        calibration = rundir.parent
    out = Path(output) if output is not None else (calibration or rundir) / "report.html"
    fmt = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md"}.get(out.suffix.lower())
    if fmt is None:
        raise ConfigError("--output", f"{out.name}: the report is .html or .md")
    run = read_info(rundir)
    cols = observable_columns(rundir)
    cfg = run.config
    # HTML embeds its images: they are made in a temporary folder
    assets = (Path(tempfile.mkdtemp(prefix="tumorpde-report-")) if fmt == "html"
              else out.with_name(out.stem + "_files"))
    try:
        return _write(rundir, out, fmt, assets, run, cols, cfg, snapshots, pvbatch, timeout,
                      calibration)
    finally:
        if fmt == "html":
            shutil.rmtree(assets, ignore_errors=True)


def _calibration_section(page: _Page, folder: Path, assets: Path) -> None:
    """Estimates, intervals, fit quality and the figures of ``tumorpde calibrate``."""
    import json

    rec = json.loads((folder / "calibration.json").read_text())
    page.heading(2, "Calibration")
    page.para(f"{folder.resolve()}: {rec.get('status')} ({rec.get('method', 'lsq')}), objective "
              f"{_fmt(rec.get('objective'))} on {rec.get('n_data')} data rows"
              + (f" with t <= {rec['until']:g}" if rec.get("until") is not None else "")
              + f"; AIC {_fmt(rec.get('aic'))}, BIC {_fmt(rec.get('bic'))}; "
              f"{rec.get('evaluations')} runs in {_seconds(rec.get('timings', {}).get('total'))}."
              " The run below is the one at the estimate.")
    rows = []
    for key, v in rec.get("parameters", {}).items():
        lo, hi = (v.get("ci95") or [None, None])[:2]
        interval = "field" if v.get("field") else f"[{_fmt(lo)}, {_fmt(hi)}]"
        prof = rec.get("profiles", {}).get(key, {}).get("ci95")
        rows.append([key, v.get("estimate"), interval, _fmt(v.get("std")),
                     "-" if not prof else f"[{_fmt(prof[0])}, {_fmt(prof[1])}]",
                     f"[{_fmt(v['bounds'][0])}, {_fmt(v['bounds'][1])}] {v.get('unit', '')}"])
    page.table(["parameter", "estimate", "95 % interval", "std", "profile 95 %", "bounds"],
               rows, code_first=True)
    figures = []
    for name in ("fit.png", "profiles.png", "corner.png"):
        if (folder / name).is_file():
            (assets / "calibration").mkdir(parents=True, exist_ok=True)
            figures.append(Path(shutil.copy2(folder / name, assets / "calibration" / name)))
    page.images(figures)


def _or(value: Any, default: Any) -> Any:
    """``value``, or ``default`` where run.json has no such key."""
    return default if value is None else value


def _write(rundir: Path, out: Path, fmt: str, assets: Path, run: RunInfo,
           cols: dict[str, list[float]], cfg: dict[str, Any], snapshots: bool,
           pvbatch: str | None, timeout: float | None,
           calibration: Path | None = None) -> ReportResult:
    if fmt == "md" and assets.exists():
        shutil.rmtree(assets)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        assets.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--output", f"cannot create {assets}: {exc.strerror}") from None
    result = ReportResult(out)
    if snapshots:
        from tumorpde.apps.render import find_pvbatch, render

        try:
            find_pvbatch(pvbatch)
        except ConfigError as exc:
            if pvbatch:
                raise
            result.note = f"no ParaView snapshots: {exc.message}"
    result.figures = plot(rundir, assets / "plots")
    if snapshots:
        if not result.note:
            if not (rundir / "fields.xdmf").is_file():
                result.note = "no ParaView snapshots: the run wrote no fields.xdmf"
            else:
                try:
                    res = render(rundir, outdir=assets / "snapshots", pvbatch=pvbatch,
                                 size=(420, 340), state=False, timeout=timeout)
                    result.snapshots = res.images
                except ToolError as exc:
                    result.note = f"no ParaView snapshots: {exc}"
                    log.warning("report: %s", result.note)

    def embed(p: Path) -> str:
        if fmt == "html":
            mime = {"png": "image/png", "svg": "image/svg+xml"}.get(p.suffix[1:], "image/png")
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            return f"data:{mime};base64,{data}"
        return p.resolve().relative_to(out.parent.resolve()).as_posix()

    page = _Page(fmt, embed)
    title = str(cfg.get("title") or rundir.name)
    status = run.status
    page.heading(1, title)
    t_last = cols["t"][-1]
    intro = (f"Run directory {rundir.resolve()}: {status} at t = {t_last:.6g} "
             f"{cfg.get('units', {}).get('time', '')}".rstrip() + ".")
    if run.message:
        intro += f" Message: {run.message}"
    page.para(intro)

    page.heading(2, "Run")
    counters, wall = run.counters, run.wall_time
    mesh = run.mesh or MeshInfo()
    rows = [["status", status],
            ["started / finished", f"{_or(run.started, '?')} / {_or(run.finished, '-')}"],
            ["time span", f"{cfg.get('time', {}).get('start', '?')} .. "
                          f"{cfg.get('time', {}).get('end', '?')} {cfg.get('units', {}).get('time', '')}"
                          f" ({cfg.get('time', {}).get('scheme', '?')}"
                          f"{', adaptive' if cfg.get('time', {}).get('adaptive') else ''})"],
            ["steps", f"{_or(counters.steps, '?')} accepted, "
                      f"{_or(counters.rejected_steps, 0)} rejected, "
                      f"{_or(counters.failed_solves, 0)} failed solves"],
            ["iterations", f"{_or(counters.newton_iterations, '?')} Newton, "
                           f"{_or(counters.linear_iterations, '?')} linear"],
            ["wall time", f"{_seconds(wall.total)} (setup {_seconds(wall.setup)}, "
                          f"solve {_seconds(wall.solve)})"],
            ["mesh", f"{_or(mesh.cells, '?')} cells, {_or(mesh.dofs, '?')} unknowns, "
                     f"P{_or(mesh.degree, '?')} ({cfg.get('mesh', {}).get('shape', '?')})"],
            ["MPI ranks", _or(run.ranks, "?")], ["host", _or(run.host, "?")],
            ["command", " ".join(["tumorpde", *[str(a) for a in run.argv[1:]]])
             if run.argv else "-"]]
    if cfg.get("knockout"):
        rows.insert(3, ["knockout", ", ".join(cfg["knockout"])])
    page.table(["", ""], rows)

    if calibration is not None:
        _calibration_section(page, calibration, assets)

    page.heading(2, "Final observables")
    obs_cfg = cfg.get("observables", {}) if isinstance(cfg.get("observables"), dict) else {}
    species_cfg = cfg.get("species", {}) if isinstance(cfg.get("species"), dict) else {}
    rows = []
    for name, values in cols.items():
        if name == "t":
            continue
        if name.startswith("total_") and name[6:] in species_cfg:
            desc = f"integral of {name[6:]} over the domain"
        else:
            o = obs_cfg.get(name, {})
            desc = o.get("description", "") if isinstance(o, dict) else ""
        rows.append([name, values[-1], desc])
    page.para(f"At t = {t_last:.6g} (the last row of observables.csv).")
    page.table(["observable", "value", "meaning"], rows, code_first=True)

    page.heading(2, "Observables over time")
    page.images(result.figures)

    page.heading(2, f"Fields at t = {t_last:.6g}")
    if result.snapshots:
        page.para("ParaView (pvbatch) snapshots; colour ranges span every output time. "
                  "`tumorpde render` writes larger ones and a ParaView state file.")
        page.images(result.snapshots, width="280px")
    else:
        page.para(result.note or "snapshots not requested (--no-snapshots)")

    page.heading(2, "Model")
    if cfg.get("description"):
        page.para(" ".join(str(cfg["description"]).split())[:1200])
    page.table(["species", "description"],
               [[n, s.get("description", "") if isinstance(s, dict) else ""]
                for n, s in species_cfg.items()], code_first=True)
    params = cfg.get("parameters", {}) if isinstance(cfg.get("parameters"), dict) else {}
    prow = []
    for n, p in params.items():
        if isinstance(p, dict):
            prow.append([n, p.get("value", ""), p.get("description", ""), p.get("source", "")])
        else:
            prow.append([n, p, "", ""])
    if prow:
        page.raw_details_start(f"{len(prow)} parameters")
        page.table(["parameter", "value", "meaning", "source"], prow, code_first=True)
        page.raw_details_end()
    from tumorpde.io.tomlio import dumps

    try:
        text = dumps(_clean(cfg), nonfinite=True)
    except (TypeError, ValueError):
        import json

        text = json.dumps(cfg, indent=2)
    page.details("resolved configuration (TOML, as stored in run.json)", text.rstrip(), "toml")

    page.heading(2, "Versions")
    versions = run.versions or {}
    page.table(["component", "version"], [[k, v] for k, v in versions.items()])
    stamp = time.strftime("%Y-%m-%d %H:%M")
    page.para(f"Written by `tumorpde report` on {stamp}.")

    if fmt == "html":
        body = "\n".join(page.parts)
        doc = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
               "</body></html>\n")
        doc = doc.replace(f"{html.escape(status)} at t", f'<span class="status-{status}">'
                                                       f"{html.escape(status)}</span> at t", 1)
    else:
        doc = "\n".join(page.parts)
    try:
        out.write_text(doc, encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--output", f"cannot write {out}: {exc.strerror}") from None
    return result

"""The ParaView side of ``tumorpde render``: runs inside ParaView's ``pvbatch``.

This file is executed by ParaView's own Python (``pvbatch pvrender.py JOB.json``), not
imported by tumorpde: it may use nothing but the standard library and
``paraview.simple``.  :mod:`tumorpde.apps.render` writes the job (fields, times, colour
maps, image size, output names), runs ``pvbatch`` and reads back the one line
``TUMORPDE-RESULT {json}`` that this script prints: the arrays and times ParaView
found, the colour ranges used and the files written.

The pipeline: ``Xdmf3ReaderT`` on ``fields.xdmf``; in 2D the mesh coloured by a
field, seen from above; in 3D a slice through the centre normal to z with the
outline of the domain; in 1D the field plotted over x.  Every field gets a fixed
colour range over all output times (so that frames and snapshots compare) and the
colour map chosen by :mod:`tumorpde.apps.render`.  The same pipeline is saved as a ParaView
state file (``File > Load State``).
"""

import json
import os
import sys

RESULT_TAG = "TUMORPDE-RESULT "


def _fmt_time(t):
    return f"{t:.6g}".replace("+", "")


def _lut(pv, field, preset, lo, hi):
    lut = pv.GetColorTransferFunction(field)
    lut.ApplyPreset(preset, True)
    if hasattr(lut, "AutomaticRescaleRangeMode"):
        lut.AutomaticRescaleRangeMode = "Never"
    if hi <= lo:
        hi = lo + (abs(lo) if lo else 1.0) * 1e-6 + 1e-30
    lut.RescaleTransferFunction(lo, hi)
    pwf = pv.GetOpacityTransferFunction(field)
    pwf.RescaleTransferFunction(lo, hi)
    return lut


def _white_background(view):
    props = set(view.ListProperties())
    if "UseColorPaletteForBackground" in props:
        view.UseColorPaletteForBackground = 0
    for name in ("Background", "BackgroundColor"):
        if name in props:
            setattr(view, name, [1.0, 1.0, 1.0])
    if "OrientationAxesVisibility" in props:
        view.OrientationAxesVisibility = 0


def _scalar_bar(pv, lut, view, title):
    bar = pv.GetScalarBar(lut, view)
    bar.Title = title
    bar.ComponentTitle = ""
    bar.TitleColor = [0.0, 0.0, 0.0]
    bar.LabelColor = [0.0, 0.0, 0.0]
    bar.TitleFontSize = 18
    bar.LabelFontSize = 15
    bar.RangeLabelFormat = "%-#.3g"
    bar.WindowLocation = "Any Location"
    bar.Orientation = "Vertical"
    bar.Position = [0.87, 0.1]
    bar.ScalarBarLength = 0.8
    return bar


def main(job_path):
    """Render the job described in ``job_path`` (JSON written by tumorpde.apps.render)."""
    with open(job_path) as f:
        job = json.load(f)
    from paraview import simple as pv

    reader = pv.Xdmf3ReaderT(registrationName="fields.xdmf", FileName=[job["xdmf"]])
    reader.UpdatePipelineInformation()
    times = [float(t) for t in reader.TimestepValues] or [0.0]
    reader.UpdatePipeline(times[-1])
    arrays = list(reader.PointData.keys())
    missing = [f for f in job["fields"] if f not in arrays]
    if missing:
        print(RESULT_TAG + json.dumps({"arrays": arrays, "times": times, "missing": missing}))
        return 3
    fields = job["fields"]

    # colour range of each field over all output times
    ranges = {f: [float("inf"), float("-inf")] for f in fields}
    for t in times:
        reader.UpdatePipeline(t)
        for f in fields:
            lo, hi = reader.PointData[f].GetRange()
            ranges[f][0] = min(ranges[f][0], lo)
            ranges[f][1] = max(ranges[f][1], hi)
    cmaps = {}
    for f in fields:
        lo, hi = ranges[f]
        preset = job["colormaps"].get(f, job["default_colormap"])
        if lo < 0.0 < hi and abs(lo) > 1e-3 * hi:  # a signed field: symmetric, diverging
            m = max(-lo, hi)
            lo, hi, preset = -m, m, job["diverging_colormap"]
        elif lo >= 0.0 and job["from_zero"]:
            lo = 0.0
        cmaps[f] = (preset, lo, hi)
        _lut(pv, f, preset, lo, hi)

    width, height = job["size"]
    dim = job["tdim"]
    unit = job["time_unit"]
    images = []
    frames = {}

    if dim == 1:
        view = pv.CreateView("XYChartView")
        _white_background(view)
        bounds = reader.GetDataInformation().GetBounds()
        line = pv.PlotOverLine(registrationName="over x", Input=reader)
        line.Point1 = [bounds[0], bounds[2], bounds[4]]
        line.Point2 = [bounds[1], bounds[2], bounds[4]]
        if hasattr(line, "Resolution"):
            line.Resolution = max(2 * job["cells"], 100)
        display = pv.Show(line, view)
        display.UseIndexForXAxis = 0
        display.XArrayName = "arc_length"
        x0 = "x" if bounds[0] == 0 else f"x - {bounds[0]:g}"
        view.BottomAxisTitle = f"{x0} ({job['length_unit']})" if job["length_unit"] else x0
        if "ShowLegend" in set(view.ListProperties()):
            view.ShowLegend = 0
        view.ViewTime = times[-1]

        def shoot(field, t, path):
            view.ViewTime = t
            display.SeriesVisibility = [field]
            lo, hi = cmaps[field][1], cmaps[field][2]
            view.LeftAxisUseCustomRange = 1
            pad = 0.05 * (hi - lo if hi > lo else 1.0)
            view.LeftAxisRangeMinimum = lo - pad
            view.LeftAxisRangeMaximum = hi + pad
            view.LeftAxisTitle = field
            view.ChartTitle = f"{field}   t = {_fmt_time(t)} {unit}"
            pv.SaveScreenshot(path, view, ImageResolution=[width, height])
    else:
        view = pv.CreateView("RenderView")
        _white_background(view)
        if dim == 3:
            bounds = reader.GetDataInformation().GetBounds()
            center = [0.5 * (bounds[0] + bounds[1]), 0.5 * (bounds[2] + bounds[3]),
                      0.5 * (bounds[4] + bounds[5])]
            source = pv.Slice(registrationName="slice z", Input=reader)
            source.SliceType = "Plane"
            source.SliceType.Origin = center
            source.SliceType.Normal = [0.0, 0.0, 1.0]
            outline = pv.Show(reader, view)
            outline.SetRepresentationType("Outline")
            outline.AmbientColor = [0.2, 0.2, 0.2]
            outline.DiffuseColor = [0.2, 0.2, 0.2]
            pv.ColorBy(outline, None)
        else:
            source = reader
        display = pv.Show(source, view)
        display.SetRepresentationType("Surface")
        # flat, unlit colours: the colour bar reads exactly on the picture
        display.Ambient = 1.0
        display.Diffuse = 0.0
        display.Specular = 0.0
        annot = pv.AnnotateTimeFilter(registrationName="time", Input=reader)
        annot.Format = "t = {time:.6g} " + unit if _new_format(pv) else "t = %.6g " + unit
        label = pv.Show(annot, view)
        label.Color = [0.0, 0.0, 0.0]
        label.FontSize = 18
        label.WindowLocation = "Upper Left Corner"
        if dim == 2:
            view.InteractionMode = "2D"
            view.CameraPosition = [0.0, 0.0, 1.0]
            view.CameraFocalPoint = [0.0, 0.0, 0.0]
            view.CameraViewUp = [0.0, 1.0, 0.0]
        else:
            view.CameraPosition = [1.0, -1.3, 1.0]
            view.CameraFocalPoint = [0.0, 0.0, 0.0]
            view.CameraViewUp = [0.0, 0.0, 1.0]
        view.ViewSize = [width, height]
        pv.ResetCamera(view)
        if dim == 2:
            view.CameraParallelProjection = 1
            pv.ResetCamera(view)
            view.CameraParallelScale *= 0.8  # less empty margin around the domain

        def shoot(field, t, path):
            for other in fields:  # one scalar bar: the shown field's
                if other != field:
                    pv.GetScalarBar(pv.GetColorTransferFunction(other), view).Visibility = 0
            pv.ColorBy(display, ("POINTS", field))
            _lut(pv, field, *cmaps[field])  # ColorBy may have rescaled it to the data
            display.SetScalarBarVisibility(view, True)
            _scalar_bar(pv, pv.GetColorTransferFunction(field), view, field)
            view.ViewTime = t
            pv.Render(view)
            pv.SaveScreenshot(path, view, ImageResolution=[width, height])

    outdir = job["outdir"]
    for f in fields:
        for t in job["times"]:
            path = os.path.join(outdir, f"{f}_t{_fmt_time(t)}.png")
            shoot(f, t, path)
            images.append(path)
        if job["animate"]:
            fdir = os.path.join(job["frames_dir"], f)
            os.makedirs(fdir, exist_ok=True)
            frames[f] = []
            for i, t in enumerate(times):
                path = os.path.join(fdir, f"{i:05d}.png")
                shoot(f, t, path)
                frames[f].append(path)

    state = job.get("state")
    if state:
        # the state opens on the last output, coloured by the first field
        if dim == 1:
            display.SeriesVisibility = [fields[0]]
        else:
            for other in fields[1:]:
                pv.GetScalarBar(pv.GetColorTransferFunction(other), view).Visibility = 0
            pv.ColorBy(display, ("POINTS", fields[0]))
            _lut(pv, fields[0], *cmaps[fields[0]])
            display.SetScalarBarVisibility(view, True)
            _scalar_bar(pv, pv.GetColorTransferFunction(fields[0]), view, fields[0])
        scene = pv.GetAnimationScene()
        scene.UpdateAnimationUsingDataTimeSteps()
        scene.AnimationTime = times[-1]
        view.ViewTime = times[-1]
        pv.SaveState(state)

    result = {"arrays": arrays, "times": times, "images": images, "frames": frames,
              "ranges": {f: list(ranges[f]) for f in fields},
              "colormaps": {f: list(cmaps[f]) for f in fields}, "state": state}
    print(RESULT_TAG + json.dumps(result))
    return 0


def _new_format(pv):
    """ParaView >= 5.10 formats the time annotation with ``str.format``."""
    try:
        from paraview import servermanager

        v = (servermanager.vtkSMProxyManager.GetVersionMajor(),
             servermanager.vtkSMProxyManager.GetVersionMinor())
    except Exception:  # noqa: BLE001 - unknown: assume a current ParaView
        return True
    return v >= (5, 10)


if __name__ == "__main__":
    # sys.exit() would tear ParaView down in an order that fails under Xvfb
    # (GLXBadContext, status 1): return normally on success
    _status = main(sys.argv[1])
    if _status:
        sys.stdout.flush()
        os._exit(_status)

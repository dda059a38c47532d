"""Mesh files with named regions and boundaries (``tumorpde mesh``).

Two jobs, one output format (gmsh ``.msh`` with physical names, which
``[mesh] file = ...`` reads with its region and boundary names):

* **Generate** a bundled geometry (the gmsh sources in ``meshes/``: ``disk``,
  ``sphere``, ``tissue-section``, ``spheroid-box``) or any gmsh ``.geo`` file, with
  its ``DefineConstant`` parameters set by ``--set NAME=VALUE``.
* **Import** a mesh in any format meshio reads (VTK/VTU, MED, Abaqus, Medit,
  Exodus, gmsh 2/4, ...): cells of the highest dimension become regions and cells
  one dimension lower become boundaries, grouped by an integer tag per cell (gmsh
  physical tags, Medit references, ``cell_tags``, ... or ``--tag-data NAME``).
  Names come from the file where it has them (gmsh physical names) and from
  ``--region TAG=NAME`` / ``--boundary TAG=NAME``; ``--outer NAME`` names every
  boundary facet the file leaves untagged.

gmsh runs on one process; the CLI calls this on rank 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tumorpde.errors import ConfigError

__all__ = ["MESHES_DIR", "MeshSummary", "bundled", "geo_parameters", "generate", "import_mesh",
           "make_mesh", "write_tagged", "exterior_facets", "gmsh_session", "gmsh_error",
           "parse_pairs"]


def _meshes_dir() -> Path:
    here = Path(__file__).resolve().parents[1]  # the package folder
    for cand in (here / "meshes", here.parent / "meshes"):  # installed wheel, source checkout
        if cand.is_dir() and any(cand.glob("*.geo")):
            return cand
    return here.parent / "meshes"


#: where the gmsh sources of the bundled geometries live
MESHES_DIR = _meshes_dir()

#: tag arrays meshio readers produce, in order of preference
TAG_KEYS = ("gmsh:physical", "medit:ref", "cell_tags", "CellEntityIds", "subdomains", "region",
            "regions", "tag", "tags", "label", "labels", "material")

# meshio cell type -> (topological dimension, gmsh element type)
_GMSH_TYPES = {"line": (1, 1), "triangle": (2, 2), "quad": (2, 3), "tetra": (3, 4),
               "hexahedron": (3, 5)}
# facets of each cell type as local vertex indices
_FACETS = {
    "line": [[0], [1]],
    "triangle": [[0, 1], [1, 2], [2, 0]],
    "quad": [[0, 1], [1, 2], [2, 3], [3, 0]],
    "tetra": [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]],
    "hexahedron": [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6],
                   [3, 0, 4, 7]],
}
_FACET_TYPE = {1: "vertex", 2: "line", 3: "triangle", 4: "quad"}  # by number of vertices


@dataclass
class MeshSummary:
    """What was written.

    Attributes:
        path: The ``.msh`` file.
        dim: Topological dimension.
        cells: Number of cells of that dimension.
        regions: Region name -> tag.
        boundaries: Boundary name -> tag.
    """

    path: Path
    dim: int
    cells: int
    regions: dict[str, int] = field(default_factory=dict)
    boundaries: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """One-line description for the command line."""
        return (f"wrote {self.path}: {self.cells} cells ({self.dim}D), regions: "
                f"{', '.join(self.regions) or 'none'}; boundaries: "
                f"{', '.join(self.boundaries) or 'none'}")


def bundled() -> dict[str, Path]:
    """The bundled geometries: name -> gmsh source."""
    return {p.stem: p for p in sorted(MESHES_DIR.glob("*.geo"))}


_DEFINE = re.compile(r"DefineConstant\s*\[(.*?)\]\s*;", re.S)
_ENTRY = re.compile(r"([A-Za-z_]\w*)\s*=\s*\{\s*([^,{}]+?)\s*(?:,|\})")


def geo_parameters(path: Path) -> dict[str, str]:
    """``DefineConstant`` parameters of a ``.geo`` file: name -> default (as written)."""
    text = re.sub(r"//[^\n]*", "", path.read_text(encoding="utf-8", errors="replace"))
    out: dict[str, str] = {}
    for block in _DEFINE.findall(text):
        for name, default in _ENTRY.findall(block):
            out[name] = default.strip()
    return out


def parse_pairs(items: Sequence[str], option: str, key_int: bool) -> dict[Any, str]:
    """``KEY=VALUE`` options as a dict (integer tags -> valid names when ``key_int``)."""
    out: dict[Any, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(option, f"expected {'TAG' if key_int else 'NAME'}=VALUE, got {item!r}")
        k, v = (s.strip() for s in item.split("=", 1))
        if key_int:
            try:
                key: Any = int(k)
            except ValueError:
                raise ConfigError(option, f"{k!r} is not an integer tag") from None
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", v):
                raise ConfigError(option, f"{v!r} is not a valid name (letters, digits, _ and -, "
                                          "starting with a letter)")
        else:
            key = k
        out[key] = v
    return out


def gmsh_session() -> Any:
    """gmsh, initialised quietly (the caller finalizes it)."""
    import gmsh

    gmsh.initialize(interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    return gmsh


def gmsh_error(exc: Exception) -> str:
    """The last line of a gmsh exception, for a one-line message."""
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _summary(gmsh: Any, path: Path) -> MeshSummary:
    dim = gmsh.model.getDimension()
    _, tags, _ = gmsh.model.mesh.getElements(dim)
    regions, boundaries = {}, {}
    for d, tag in gmsh.model.getPhysicalGroups():
        name = gmsh.model.getPhysicalName(d, tag) or str(tag)
        if d == dim:
            regions[name] = tag
        elif d == dim - 1:
            boundaries[name] = tag
    return MeshSummary(path, dim, int(sum(len(t) for t in tags)), regions, boundaries)


def generate(source: Path, output: Path, parameters: Mapping[str, str] | None = None,
             key: str = "") -> MeshSummary:
    """Mesh a gmsh ``.geo`` source and write ``output`` (``.msh``).

    Args:
        source: The ``.geo`` file.
        output: The mesh file to write.
        parameters: ``DefineConstant`` values to set (name -> number as text).
        key: Name of the source for messages.

    Raises:
        ConfigError: Unknown parameter, non-numeric value, or gmsh cannot mesh the geometry.
    """
    known = geo_parameters(source)
    argv = [""]
    for name, value in (parameters or {}).items():
        if name not in known:
            raise ConfigError("--set", f"{key or source.name} has no parameter {name!r} "
                                       f"(parameters: {', '.join(known) or 'none'})")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError("--set", f"{name}: {value!r} is not a number") from None
        if not np.isfinite(number):
            raise ConfigError("--set", f"{name}: {value!r} is not a finite number")
        argv += ["-setnumber", name, repr(number)]
    import gmsh

    gmsh.initialize(argv, interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    try:
        try:
            gmsh.open(str(source))
            dim = gmsh.model.getDimension()
            if dim < 1:
                raise ConfigError(key or str(source), "the gmsh source defines no curve, surface "
                                                      "or volume")
            if not gmsh.model.getPhysicalGroups(dim):
                raise ConfigError(key or str(source), "the gmsh source defines no physical group "
                                                      f"of dimension {dim} (no named region)")
            gmsh.model.mesh.generate(dim)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - a geometry gmsh cannot mesh is bad input
            raise ConfigError(key or str(source), f"gmsh: {gmsh_error(exc)}") from None
        summary = _summary(gmsh, output)
        if summary.cells == 0:
            raise ConfigError(key or str(source), "gmsh produced no cells (check the parameters)")
        _write(gmsh, output)
        return summary
    finally:
        gmsh.finalize()


def _write(gmsh: Any, output: Path) -> None:
    if output.suffix.lower() != ".msh":
        raise ConfigError("--output", f"{output.name}: tumorpde writes gmsh .msh files (the format "
                                      "that keeps region and boundary names)")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--output", f"cannot create {output.parent}: {exc.strerror}") from None
    gmsh.option.setNumber("Mesh.MshFileVersion", 4.1)
    gmsh.option.setNumber("Mesh.Binary", 0)
    try:
        gmsh.write(str(output))
    except Exception as exc:  # noqa: BLE001
        raise ConfigError("--output", f"cannot write {output}: {gmsh_error(exc)}") from None


def _tag_array(mesh: Any, tag_key: str | None) -> tuple[str | None, list[np.ndarray] | None]:
    keys = list(mesh.cell_data)
    if tag_key is not None:
        if tag_key not in mesh.cell_data:
            raise ConfigError("--tag-data", f"no cell data {tag_key!r} in the mesh (cell data: "
                                            f"{', '.join(keys) or 'none'})")
        return tag_key, mesh.cell_data[tag_key]
    for k in TAG_KEYS:
        if k in mesh.cell_data:
            return k, mesh.cell_data[k]
    return None, None


def import_mesh(source: Path, output: Path, regions: Sequence[str] = (),
                boundaries: Sequence[str] = (), outer: str | None = None,
                tag_key: str | None = None) -> MeshSummary:
    """Convert a mesh file (any meshio format) to ``.msh`` with named regions and boundaries.

    Args:
        source: The mesh file.
        output: The ``.msh`` file to write.
        regions: ``TAG=NAME`` names of cell tags.
        boundaries: ``TAG=NAME`` names of facet tags.
        outer: Name for the boundary facets the file does not tag.
        tag_key: Cell data holding the integer tags (default: the first of :data:`TAG_KEYS`).

    Raises:
        ConfigError: Unreadable file, unsupported cells, unknown tags, bad names.
    """
    import meshio

    region_names = parse_pairs(regions, "--region", True)
    boundary_names = parse_pairs(boundaries, "--boundary", True)
    if outer is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", outer):
        raise ConfigError("--outer", f"{outer!r} is not a valid name")
    try:
        mesh = meshio.read(str(source))
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        raise ConfigError("", f"cannot read mesh {source}: {gmsh_error(exc)}") from None
    blocks = [b for b in mesh.cells if len(b.data)]
    dims = {_GMSH_TYPES[b.type][0] for b in blocks if b.type in _GMSH_TYPES}
    if not dims:
        kinds = ", ".join(sorted({b.type for b in blocks})) or "none"
        raise ConfigError("", f"{source.name}: no supported cells (found {kinds}; supported: "
                              f"{', '.join(_GMSH_TYPES)})")
    tdim = max(dims)
    unsupported = sorted({b.type for b in blocks if b.type not in _GMSH_TYPES and b.type != "vertex"})
    if unsupported:
        raise ConfigError("", f"{source.name}: unsupported cell type(s) {', '.join(unsupported)} "
                              f"(supported: {', '.join(_GMSH_TYPES)})")
    key, tag_data = _tag_array(mesh, tag_key)
    # names stored in the file: gmsh physical names (field_data: name -> [tag, dim])
    file_names: dict[tuple[int, int], str] = {}
    for name, value in (mesh.field_data or {}).items():
        arr = np.asarray(value).ravel()
        if len(arr) >= 2:
            file_names[(int(arr[1]), int(arr[0]))] = str(name)

    cells: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}  # type -> (connectivity, tags)
    for i, block in enumerate(mesh.cells):
        if block.type not in _GMSH_TYPES or _GMSH_TYPES[block.type][0] < tdim - 1:
            continue
        n = len(block.data)
        if tag_data is not None:
            tags = np.asarray(tag_data[i]).reshape(n, -1)[:, 0].astype(np.int64)
        else:
            tags = np.ones(n, dtype=np.int64)
        cells.setdefault(block.type, []).append((np.asarray(block.data, dtype=np.int64), tags))

    top = {t: c for t, c in cells.items() if _GMSH_TYPES[t][0] == tdim}
    facets = {t: c for t, c in cells.items() if _GMSH_TYPES[t][0] == tdim - 1}
    cell_tags = np.unique(np.concatenate([tg for c in top.values() for _, tg in c]))
    if np.any(cell_tags <= 0):
        raise ConfigError("", f"{source.name}: cell tags must be positive integers (found "
                              f"{int(cell_tags.min())} in {key or 'the cells'})")
    for tag in region_names:
        if tag not in set(cell_tags.tolist()):
            raise ConfigError("--region", f"no cells with tag {tag} (cell tags in {key}: "
                                          f"{', '.join(map(str, cell_tags.tolist()))})")
    facet_tags = (np.unique(np.concatenate([tg for c in facets.values() for _, tg in c]))
                  if facets else np.zeros(0, dtype=np.int64))
    facet_tags = facet_tags[facet_tags > 0]
    for tag in boundary_names:
        if tag not in set(facet_tags.tolist()):
            raise ConfigError("--boundary", f"no boundary facets with tag {tag} (facet tags: "
                                            f"{', '.join(map(str, facet_tags.tolist())) or 'none'})")

    if outer is not None:
        untagged = exterior_facets(top, facets)
        if len(untagged[1]):
            new_tag = int(max(facet_tags.max() if len(facet_tags) else 0, 0)) + 1
            ftype, conn = untagged
            facets.setdefault(ftype, []).append((conn, np.full(len(conn), new_tag)))
            boundary_names[new_tag] = outer
            facet_tags = np.append(facet_tags, new_tag)

    def name_of(dim: int, tag: int, given: Mapping[int, str]) -> str:
        return given.get(tag) or file_names.get((dim, tag)) or str(tag)

    region_map = {int(t): name_of(tdim, int(t), region_names) for t in cell_tags}
    boundary_map = {int(t): name_of(tdim - 1, int(t), boundary_names) for t in facet_tags}
    for kind, mapping in (("region", region_map), ("boundary", boundary_map)):
        seen: dict[str, int] = {}
        for t, n in mapping.items():
            if n in seen:
                raise ConfigError(f"--{kind}", f"the name {n!r} is given to tags {seen[n]} and {t}")
            seen[n] = t

    return write_tagged(source.stem, mesh.points, tdim, top, facets, region_map, boundary_map,
                        output)


def write_tagged(name: str, points: np.ndarray, tdim: int,
                 top: Mapping[str, list[tuple[np.ndarray, np.ndarray]]],
                 facets: Mapping[str, list[tuple[np.ndarray, np.ndarray]]],
                 region_map: Mapping[int, str], boundary_map: Mapping[int, str],
                 output: Path) -> MeshSummary:
    """Write cells and facets with integer tags as ``.msh`` with named physical groups.

    Args:
        name: The gmsh model's name.
        points: Node coordinates ``(n, gdim)``.
        tdim: Topological dimension of the cells.
        top: Cell type -> list of (connectivity, tags) of the ``tdim`` cells.
        facets: The same for the tagged facets (tags <= 0: not part of any boundary).
        region_map: Cell tag -> region name.
        boundary_map: Facet tag -> boundary name.
        output: The ``.msh`` file.
    """
    gdim = points.shape[1]
    xyz = np.zeros((len(points), 3))
    xyz[:, :gdim] = points
    gmsh = gmsh_session()
    try:
        gmsh.model.add(name)
        entities: list[tuple[int, int]] = []
        for t in region_map:
            gmsh.model.addDiscreteEntity(tdim, t)
            entities.append((tdim, t))
        for t in boundary_map:
            gmsh.model.addDiscreteEntity(tdim - 1, t)
        node_tags = np.arange(1, len(xyz) + 1)
        gmsh.model.mesh.addNodes(tdim, entities[0][1], node_tags, xyz.ravel())
        next_element = 1
        for group in (top, facets):  # gmsh infers each element's dimension from its type
            for ctype, parts in group.items():
                etype = _GMSH_TYPES[ctype][1]
                for conn, tags in parts:
                    for t in np.unique(tags):
                        if t <= 0:
                            continue  # untagged facets are not part of any boundary
                        sel = conn[tags == t]
                        etags = np.arange(next_element, next_element + len(sel))
                        next_element += len(sel)
                        gmsh.model.mesh.addElementsByType(int(t), etype, etags, (sel + 1).ravel())
        for t, n in region_map.items():
            gmsh.model.addPhysicalGroup(tdim, [t], t, name=n)
        for t, n in boundary_map.items():
            gmsh.model.addPhysicalGroup(tdim - 1, [t], t, name=n)
        summary = _summary(gmsh, output)
        _write(gmsh, output)
        return summary
    finally:
        gmsh.finalize()


def exterior_facets(top: Mapping[str, list[tuple[np.ndarray, np.ndarray]]],
                     facets: Mapping[str, list[tuple[np.ndarray, np.ndarray]]],
                     ) -> tuple[str, np.ndarray]:
    """Exterior facets of the top-dimensional cells that no tagged facet covers."""
    all_facets = []
    for ctype, parts in top.items():
        for conn, _ in parts:
            for local in _FACETS[ctype]:
                all_facets.append(conn[:, local])
    if not all_facets:
        return "line", np.zeros((0, 2), dtype=np.int64)
    widths = {f.shape[1] for f in all_facets}
    if len(widths) != 1:
        raise ConfigError("--outer", "meshes mixing facet shapes (e.g. hexahedra and tetrahedra) "
                                     "need their boundaries tagged in the file")
    width = widths.pop()
    f = np.concatenate(all_facets)
    key = np.sort(f, axis=1)
    _, first, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
    exterior = f[first[counts == 1]]
    tagged = [np.sort(conn[tags > 0], axis=1) for parts in facets.values() for conn, tags in parts
              if conn.shape[1] == width]
    if tagged:
        done = {tuple(r) for r in np.concatenate(tagged)}
        keep = np.array([tuple(r) not in done for r in np.sort(exterior, axis=1)], dtype=bool)
        exterior = exterior[keep] if len(exterior) else exterior
    return _FACET_TYPE[width], exterior


def make_mesh(name: str, output: str | Path | None = None, parameters: Sequence[str] = (),
              regions: Sequence[str] = (), boundaries: Sequence[str] = (),
              outer: str | None = None, tag_key: str | None = None) -> MeshSummary:
    """``tumorpde mesh NAME``: generate a bundled geometry or ``.geo`` file, or import a mesh.

    Args:
        name: Bundled geometry name, ``.geo`` file, or mesh file in a meshio format.
        output: ``.msh`` file to write (default ``NAME.msh`` in the working directory).
        parameters: ``NAME=VALUE`` settings of ``.geo`` parameters.
        regions: ``TAG=NAME`` (imports only, see :func:`import_mesh`).
        boundaries: ``TAG=NAME`` (imports only).
        outer: Name of the untagged boundary (imports only).
        tag_key: Cell data holding the tags (imports only).
    """
    path = Path(name)
    geometries = bundled()
    if path.is_file():
        source, is_geo = path, path.suffix.lower() == ".geo"
    elif name in geometries and "/" not in name:
        source, is_geo = geometries[name], True
    else:
        raise ConfigError("", f"no mesh file or bundled geometry {name!r} (bundled: "
                              f"{', '.join(geometries) or 'none'}; `tumorpde mesh --list`)")
    out = Path(output) if output else Path(f"{source.stem}.msh")
    if out.suffix.lower() != ".msh":
        raise ConfigError("--output", f"{out.name}: tumorpde writes gmsh .msh files (the format "
                                      "that keeps region and boundary names)")
    if out.resolve() == source.resolve():
        raise ConfigError("--output", f"{out} is the input file")
    if is_geo:
        for opt, given in (("--region", regions), ("--boundary", boundaries),
                           ("--outer", [outer] if outer else []),
                           ("--tag-data", [tag_key] if tag_key else [])):
            if given:
                raise ConfigError(opt, "applies to imported meshes; a .geo source names its "
                                       "physical groups itself")
        return generate(source, out, parse_pairs(parameters, "--set", False), name)
    if parameters:
        raise ConfigError("--set", "sets parameters of .geo sources; an imported mesh has none")
    return import_mesh(source, out, regions, boundaries, outer, tag_key)

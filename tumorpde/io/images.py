"""Medical images (NIfTI) in physical coordinates: reading, sampling, writing, comparing.

An :class:`Image` is a voxel array with its affine (voxel index -> physical coordinates,
the scanner's millimetres as NIfTI stores them: spacing, orientation and offset).  Voxel
``(i, j, k)`` has its centre at ``affine @ (i, j, k, 1)``; the voxel covers the index
box ``[i - 1/2, i + 1/2] x ...``.

* 3-D images map to 3-D meshes; 2-D images (shape ``(nx, ny)`` or ``(nx, ny, 1)``) map to
  2-D meshes in the physical ``(x, y)`` plane, so their slice must be axial (the affine
  may rotate and scale within the plane and shift it in any direction; ``z`` is dropped).
* :meth:`Image.sample` interpolates trilinearly (bilinearly in 2-D) in physical
  coordinates (``order=0``: the value of the voxel that contains the point, for label
  maps); points outside the image's voxels get ``outside``.
* :func:`write_like` writes an array on a reference image's grid (same affine and shape).
* :func:`adc_to_cellularity` is the linear ADC -> tumour-cell fraction map of quantitative
  diffusion-weighted MRI; :func:`compare` gives Dice, volumes and totals of two maps.

nibabel is imported on first use (``pip install 'tumorpde[imaging]'``).  Everything here is
numpy/scipy on one process; no DOLFINx.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tumorpde.errors import ConfigError

__all__ = ["Image", "read_image", "from_array", "write_like", "is_nifti", "labels_of",
           "select_labels", "adc_to_cellularity", "compare", "format_box", "NIFTI_SUFFIXES",
           "ADC_WATER"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")

#: apparent diffusion coefficient of free water at 37 degrees C, mm^2/s (Le Bihan 1988,
#: Radiology 168:497; the value used by Atuegwu et al. 2013 and Hormuth et al. 2021)
ADC_WATER = 3.0e-3


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:  # pragma: no cover - the imaging extra is part of the test set-up
        raise ConfigError("", "reading images needs nibabel: pip install 'tumorpde[imaging]'") \
            from None
    return nibabel


def is_nifti(path: str | Path) -> bool:
    """Whether the file name ends like a NIfTI file (``.nii`` or ``.nii.gz``)."""
    name = str(path).lower()
    return name.endswith(NIFTI_SUFFIXES)


@dataclass
class Image:
    """A voxel image with its affine.

    Attributes:
        path: The file it was read from (or ``""``).
        data: The voxel values, float64, shape ``(nx, ny)`` or ``(nx, ny, nz)``.
        affine: The 4x4 affine of the file: voxel index -> physical coordinates.
        shape3: The file's own 3-D shape (a 2-D image has ``nz = 1``).
    """

    path: str
    data: np.ndarray
    affine: np.ndarray
    shape3: tuple[int, int, int]

    @property
    def dim(self) -> int:
        """2 for a single axial slice, else 3."""
        return self.data.ndim

    @property
    def matrix(self) -> np.ndarray:
        """The ``dim x dim`` linear part of the affine used for this image's coordinates."""
        return self.affine[:self.dim, :self.dim]

    @property
    def offset(self) -> np.ndarray:
        """Physical position of the centre of voxel 0 (``dim`` coordinates)."""
        return self.affine[:self.dim, 3]

    @property
    def spacing(self) -> np.ndarray:
        """Voxel edge lengths along the index axes (the column norms of the affine)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)[:self.dim]

    @property
    def voxel_volume(self) -> float:
        """Physical area (2-D) or volume (3-D) of one voxel."""
        return float(abs(np.linalg.det(self.matrix)))

    def points(self, index: np.ndarray) -> np.ndarray:
        """Physical coordinates ``(n, dim)`` of (continuous) voxel indices ``(n, dim)``."""
        return np.asarray(index, dtype=float) @ self.matrix.T + self.offset

    def index(self, points: np.ndarray) -> np.ndarray:
        """Continuous voxel indices ``(n, dim)`` of physical points ``(n, >= dim)``."""
        p = np.asarray(points, dtype=float)[:, :self.dim]
        return np.linalg.solve(self.matrix, (p - self.offset).T).T

    def centres(self, where: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, points)`` of the voxels where ``where`` (default all), in C order."""
        sel = np.ones(self.data.shape, dtype=bool) if where is None else np.asarray(where, bool)
        idx = np.argwhere(sel)
        return idx, self.points(idx)

    def inside(self, points: np.ndarray) -> np.ndarray:
        """Whether each point lies in one of the image's voxels."""
        q = self.index(points)
        n = np.array(self.data.shape)
        return np.all((q >= -0.5) & (q <= n - 0.5), axis=1)

    def sample(self, points: np.ndarray, order: int = 1, outside: float = 0.0,
               values: np.ndarray | None = None) -> np.ndarray:
        """The image at physical points ``(n, >= dim)``.

        Args:
            points: Physical coordinates (extra columns such as a zero ``z`` are ignored).
            order: 1 for trilinear (bilinear) interpolation between voxel centres, 0 for
                the value of the voxel containing the point.
            outside: The value at points outside every voxel.
            values: Voxel values to sample instead of :attr:`data` (same shape).
        """
        from scipy import ndimage

        arr = self.data if values is None else np.asarray(values, dtype=float)
        q = self.index(points)
        n = np.array(arr.shape)
        ok = np.all((q >= -0.5) & (q <= n - 0.5), axis=1)
        out = np.full(len(q), float(outside))
        if not ok.any():
            return out
        qi = np.clip(q[ok], 0, n - 1)  # the half-voxel rim: the edge voxel's value
        if order == 0:
            ijk = np.clip(np.floor(q[ok] + 0.5).astype(int), 0, n - 1)
            out[ok] = arr[tuple(ijk.T)]
        else:
            out[ok] = ndimage.map_coordinates(arr, qi.T, order=1, mode="nearest")
        return out

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The physical bounding box ``(lo, hi)`` of the image's voxels (their outer faces)."""
        corners = self.points(np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in self.data.shape],
                                                   indexing="ij")).reshape(self.dim, -1).T)
        return corners.min(axis=0), corners.max(axis=0)

    def integral(self, where: np.ndarray | None = None) -> float:
        """Sum of the voxel values (where ``where``) times the voxel volume."""
        v = self.data if where is None else self.data[np.asarray(where, bool)]
        return float(np.sum(v) * self.voxel_volume)


def format_box(lo: np.ndarray, hi: np.ndarray) -> str:
    """A bounding box for messages: ``[x0, x1] x [y0, y1] ...``."""
    return " x ".join(f"[{a:.4g}, {b:.4g}]" for a, b in zip(lo, hi, strict=True))


def read_image(path: str | Path, key: str = "") -> Image:
    """Read a NIfTI image (``.nii`` or ``.nii.gz``) and check it.

    Args:
        path: The file.
        key: Config key or option for messages (default: the file name).

    Raises:
        ConfigError: No such file, not a NIfTI file, more than one volume (4-D), a singular
            or non-finite affine, non-finite voxel values, a 2-D image that is not axial.
    """
    path = Path(path)
    key = key or str(path)
    if not path.is_file():
        raise ConfigError(key, f"no such image file {str(path)!r}")
    if not is_nifti(path):
        raise ConfigError(key, f"{path.name} is not a NIfTI image (expected .nii or .nii.gz)")
    nib = _nibabel()
    try:
        img = nib.load(str(path))
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise TypeError(type(img).__name__)
        data = np.asarray(img.dataobj, dtype=float)
        affine = np.asarray(img.affine, dtype=float)
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        text = str(exc).strip().splitlines()
        raise ConfigError(key, f"{path.name} cannot be read as a NIfTI image"
                               f"{': ' + text[0] if text else ''}") from None
    return _checked(str(path), data, affine, key)


def _checked(path: str, data: np.ndarray, affine: np.ndarray, key: str) -> Image:
    name = Path(path).name or "the image"
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim > 3:
        raise ConfigError(key, f"{name} has {data.ndim} dimensions {data.shape}: give one "
                               "volume (a 2-D or 3-D image)")
    if data.ndim < 2 or data.size == 0:
        raise ConfigError(key, f"{name} has shape {data.shape}: expected a 2-D or 3-D image")
    shape3 = tuple(data.shape) + (1,) * (3 - data.ndim)
    if not np.all(np.isfinite(affine)):
        raise ConfigError(key, f"{name}: the affine is not finite")
    a3 = affine[:3, :3]
    if abs(np.linalg.det(a3)) <= 1e-12 * max(np.linalg.norm(a3, axis=0).prod(), 1e-300) or \
            np.linalg.matrix_rank(a3) < 3:
        raise ConfigError(key, f"{name}: the affine is singular (voxel axes "
                               f"{np.round(a3, 6).tolist()})")
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.ndim == 2:
        if np.any(np.abs(affine[2, :2]) > 1e-9 * np.linalg.norm(a3)):
            raise ConfigError(key, f"{name}: a 2-D image must be an axial slice (its in-plane "
                                   "axes without a z component); this one is tilted")
        if abs(np.linalg.det(affine[:2, :2])) <= 1e-12 * np.linalg.norm(affine[:2, :2]) ** 2:
            raise ConfigError(key, f"{name}: the in-plane affine is singular")
    if not np.all(np.isfinite(data)):
        raise ConfigError(key, f"{name} has {int(np.sum(~np.isfinite(data)))} non-finite "
                               "voxel values")
    return Image(path, data, affine, (int(shape3[0]), int(shape3[1]), int(shape3[2])))


def from_array(data: np.ndarray, affine: np.ndarray, key: str = "image") -> Image:
    """An :class:`Image` from an array and an affine, checked as :func:`read_image` does."""
    return _checked("", np.asarray(data, dtype=float), np.asarray(affine, dtype=float), key)


def write_like(path: str | Path, data: np.ndarray, like: Image, dtype: Any = np.float32) -> Path:
    """Write ``data`` (the shape of ``like.data``) as NIfTI with ``like``'s affine.

    The file gets the reference's 3-D shape (a 2-D image is written with ``nz = 1``), its
    affine as both sform and qform, and millimetres as the spatial unit.
    """
    nib = _nibabel()
    arr = np.asarray(data)
    if arr.shape != like.data.shape:
        raise ValueError(f"data of shape {arr.shape} for an image of shape {like.data.shape}")
    img = nib.Nifti1Image(arr.reshape(like.shape3).astype(dtype), like.affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(like.affine, code=1)
    img.set_sform(like.affine, code=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part" + "".join(path.suffixes[-2:]))
    nib.save(img, str(tmp))
    tmp.replace(path)
    return path


def adc_to_cellularity(adc: np.ndarray, adc_min: float | None = None,
                       adc_water: float = ADC_WATER, capacity: float = 1.0,
                       mask: np.ndarray | None = None) -> np.ndarray:
    """Tumour-cell density from an apparent-diffusion-coefficient map.

    ``N = capacity * (adc_water - ADC) / (adc_water - adc_min)``, clipped to
    ``[0, capacity]``: cellularity falls linearly from ``capacity`` at the smallest ADC
    (the most densely packed tissue) to 0 at the ADC of free water.  This is the
    conversion of Atuegwu et al., Transl Oncol 6:256 (2013), eq. 2, and Hormuth et al.,
    Nat Protoc 16:5309 (2021), Box 2 (with ``capacity`` the carrying capacity per voxel and
    ``adc_min`` the minimum ADC inside the tumour over all visits).

    Args:
        adc: ADC values (mm^2/s, the unit of ``adc_water``).
        adc_min: The ADC of maximal cellularity (default: the minimum of ``adc`` inside
            ``mask``, or over the whole map).
        adc_water: The ADC of free water (default :data:`ADC_WATER`, 3.0e-3 mm^2/s).
        capacity: The cell density (or cell count per voxel) at ``adc_min``.
        mask: Voxels where the conversion applies (0 elsewhere); default everywhere.

    Raises:
        ConfigError: ``adc_min`` not below ``adc_water``, or a non-positive capacity.
    """
    a = np.asarray(adc, dtype=float)
    m = np.ones(a.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if adc_min is None:
        if not m.any():
            raise ConfigError("adc_min", "the mask is empty: no ADC to take the minimum of")
        adc_min = float(np.min(a[m]))
    if not adc_min < adc_water:
        raise ConfigError("adc_min", f"must be below the ADC of water ({adc_water:g}), "
                                     f"got {adc_min:g}")
    if not capacity > 0:
        raise ConfigError("capacity", f"must be positive, got {capacity:g}")
    n = capacity * (adc_water - a) / (adc_water - adc_min)
    return np.where(m, np.clip(n, 0.0, capacity), 0.0)


def compare(predicted: np.ndarray, observed: np.ndarray, voxel_volume: float,
            threshold: float, mask: np.ndarray | None = None) -> dict[str, float]:
    """Agreement of a predicted and an observed map on one grid.

    Args:
        predicted: The model's map.
        observed: The measured map (same shape).
        voxel_volume: Physical volume (area) of a voxel.
        threshold: The value above which a voxel counts as tumour (for Dice and volumes).
        mask: Voxels compared (default all).

    Returns:
        ``dice`` (2|P and O| / (|P| + |O|), 1 when both are empty), ``volume_predicted``,
        ``volume_observed``, ``volume_error`` (relative), ``total_predicted``,
        ``total_observed`` (sums times the voxel volume: cell counts for a density),
        ``total_error`` (relative), ``rmse`` and ``voxels`` (the number compared).
    """
    p = np.asarray(predicted, dtype=float)
    o = np.asarray(observed, dtype=float)
    if p.shape != o.shape:
        raise ValueError(f"maps of shapes {p.shape} and {o.shape}")
    m = np.ones(p.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    p, o = p[m], o[m]
    bp, bo = p > threshold, o > threshold
    both = int(np.sum(bp & bo))
    size = int(np.sum(bp) + np.sum(bo))
    vp, vo = float(np.sum(bp) * voxel_volume), float(np.sum(bo) * voxel_volume)
    tp_, to = float(np.sum(p) * voxel_volume), float(np.sum(o) * voxel_volume)
    return {"dice": 2.0 * both / size if size else 1.0,
            "volume_predicted": vp, "volume_observed": vo,
            "volume_error": (vp - vo) / vo if vo else float("nan"),
            "total_predicted": tp_, "total_observed": to,
            "total_error": (tp_ - to) / to if to else float("nan"),
            "rmse": float(np.sqrt(np.mean((p - o) ** 2))) if p.size else float("nan"),
            "voxels": int(p.size)}


def labels_of(image: Image) -> list[int]:
    """The distinct non-zero integer labels of a label image."""
    vals = np.unique(image.data)
    return [int(v) for v in vals if v != 0 and float(v).is_integer()]


def select_labels(image: Image, labels: Sequence[int] = (), key: str = "--label") -> np.ndarray:
    """The boolean mask of ``labels`` (default: every non-zero voxel).

    Raises:
        ConfigError: A label that no voxel has, or an empty mask.
    """
    present = labels_of(image)
    if labels:
        for lab in labels:
            if lab not in present:
                raise ConfigError(key, f"label {lab} is not in {Path(image.path).name or 'the image'}"
                                       f" (its labels: {', '.join(map(str, present)) or 'none'})")
        mask = np.isin(image.data, list(labels))
    else:
        mask = image.data != 0
    if not mask.any():
        raise ConfigError(key, f"{Path(image.path).name or 'the image'} has no non-zero voxel "
                               "(an empty mask)")
    return mask

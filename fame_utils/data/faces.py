"""Face-verification pairs: the paper's G, P, T protocol CSVs (gallery, probe, 1 = genuine /
0 = impostor) over a folder of aligned crops of AR face, SCface and CFP-FP (Sec. 4, Table 1).

:func:`load_face_protocol` reads any such CSV; :func:`load_sample_faces` the bundled stand-ins
in ``data/faces/`` (``data/faces/README.md``). Images are (N, 3, S, S) float in [0, 1] RGB.
Crops are image files or, as the authors stored them, one HDF5 file per image
(:func:`h5_crop_name`) holding an H × W × 3 RGB array ``data`` (uint8, or float in [0, 1]).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .transforms import load_image

__all__ = [
    "FACES_DIR",
    "SAMPLE_CHIP_PADDING",
    "SAMPLE_FACE_SUBSETS",
    "FacePairs",
    "load_face_protocol",
    "load_sample_faces",
    "h5_crop_name",
]

#: The bundled face data: aligned 150x150 chips, their variations and the pair protocols.
FACES_DIR: Path = Path(__file__).resolve().parents[2] / "data" / "faces"

#: dlib's chip padding of the bundled chips (``get_face_chip(img, shape, 150, 0.25)``).
SAMPLE_CHIP_PADDING = 0.25

#: Names of the bundled protocols, stand-ins for AR face, SCface and CFP-FP.
SAMPLE_FACE_SUBSETS: tuple[str, ...] = ("occlusion", "resolution", "pose")

_REQUIRED = ("G", "P", "T")
_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no"}
_PROGRESS_MIN_FILES = 200  # progress="auto" shows a bar from this many image files on


@dataclass
class FacePairs:
    """Gallery/probe pairs of one protocol, with labels.

    Attributes:
        gallery: (N, 3, H, W) float tensor in [0, 1], RGB: the gallery image of each pair.
        probe: (N, 3, H, W) float tensor in [0, 1], RGB, same device: the probe of each pair.
        genuine: (N,) bool tensor on the same device: True = same person (``T`` = 1).
        gallery_files: the ``G`` entries of the CSV, as written there (relative to ``root``).
        probe_files: the ``P`` entries of the CSV, as written there.
        variation: the CSV's ``variation`` column (e.g. ``"glasses"``, ``"x8"``, ``"pose"``),
            or None when the CSV has none.
        extra: every other CSV column, as strings, e.g. ``{"source": [...]}``.
        root: the folder the relative file names were resolved against.

    Row i of every field describes the same pair, in the CSV's row order. One image file used by
    several pairs is loaded once; ``gallery``/``probe`` rows that share a file are equal.
    """

    gallery: Tensor
    probe: Tensor
    genuine: Tensor
    gallery_files: list[str]
    probe_files: list[str]
    variation: list[str] | None = None
    extra: dict[str, list[str]] = field(default_factory=dict)
    root: Path | None = None

    def __post_init__(self) -> None:
        n = len(self.gallery_files)
        sizes = {
            "gallery": self.gallery.shape[0],
            "probe": self.probe.shape[0],
            "genuine": self.genuine.shape[0],
            "gallery_files": n,
            "probe_files": len(self.probe_files),
        }
        if self.variation is not None:
            sizes["variation"] = len(self.variation)
        sizes.update({f"extra[{k!r}]": len(v) for k, v in self.extra.items()})
        if len(set(sizes.values())) != 1:
            raise ValueError(f"FacePairs fields disagree on the number of pairs: {sizes}")
        if self.genuine.dtype != torch.bool or self.genuine.ndim != 1:
            raise ValueError(
                f"genuine must be a 1-D bool tensor, got {self.genuine.dtype} {tuple(self.genuine.shape)}"
            )

    def __len__(self) -> int:
        return len(self.gallery_files)

    @property
    def device(self) -> torch.device:
        return self.gallery.device

    def balanced(self, n: int | None) -> FacePairs:
        """The first ceil(n/2) genuine and floor(n/2) impostor pairs, in protocol order
        (every pair for ``None``): a small run that keeps both kinds."""
        if n is None:
            return self
        g = self.genuine.cpu()
        keep = torch.cat([g.nonzero()[: (n + 1) // 2], (~g).nonzero()[: n // 2]]).flatten()
        return self.subset(keep.sort().values)

    def subset(
        self, index: int | slice | Sequence[int] | Sequence[bool] | Tensor | np.ndarray
    ) -> FacePairs:
        """The pairs selected by ``index``, in that order, as a new :class:`FacePairs`.

        ``index`` may be an int (a batch of one pair), a slice, a sequence of ints, a bool mask of
        length N, or a tensor (any device) or array of either.
        """
        n = len(self)
        if isinstance(index, slice):
            idx = torch.arange(n)[index]
        elif isinstance(index, (int, np.integer)):
            if not -n <= int(index) < n:
                raise IndexError(f"pair index {int(index)} out of range for {n} pairs")
            idx = torch.tensor([int(index) % n])
        else:
            t = torch.as_tensor(np.asarray(index.cpu() if isinstance(index, Tensor) else index))
            if t.dtype == torch.bool:
                if t.shape != (n,):
                    raise IndexError(f"bool mask must have shape ({n},), got {tuple(t.shape)}")
                idx = torch.nonzero(t).flatten()
            elif t.numel() == 0:
                idx = torch.zeros(0, dtype=torch.long)
            elif t.is_floating_point() or t.ndim != 1:
                raise TypeError(
                    f"index must be an int, a slice, 1-D ints or a bool mask; got {t.dtype} {tuple(t.shape)}"
                )
            else:
                idx = t.long()
                bad = idx[(idx < -n) | (idx >= n)]
                if bad.numel():
                    raise IndexError(f"pair indices {bad.tolist()} out of range for {n} pairs")
                idx = idx % n
        rows = idx.tolist()
        dev_idx = idx.to(self.gallery.device)

        def pick(values: list[str]) -> list[str]:
            return [values[i] for i in rows]

        return replace(
            self,
            gallery=self.gallery[dev_idx],
            probe=self.probe[dev_idx],
            genuine=self.genuine[dev_idx],
            gallery_files=pick(self.gallery_files),
            probe_files=pick(self.probe_files),
            variation=None if self.variation is None else pick(self.variation),
            extra={k: pick(v) for k, v in self.extra.items()},
        )

    def select(
        self, *, variation: str | Sequence[str] | None = None, genuine: bool | None = None
    ) -> FacePairs:
        """The pairs with the given variation(s) and/or label, in protocol order.

        Raises:
            ValueError: ``variation`` given but the protocol has no variation column, or names a
                variation that does not occur (the message lists those that do).
        """
        keep = np.ones(len(self), dtype=bool)
        if variation is not None:
            if self.variation is None:
                raise ValueError("this protocol has no 'variation' column to select on")
            wanted = {variation} if isinstance(variation, str) else set(variation)
            unknown = wanted - set(self.variation)
            if unknown:
                raise ValueError(
                    f"unknown variation(s) {sorted(unknown)}; this protocol has {sorted(set(self.variation))}"
                )
            keep &= np.array([v in wanted for v in self.variation], dtype=bool)
        if genuine is not None:
            keep &= self.genuine.cpu().numpy() == bool(genuine)
        return self.subset(keep)

    def to(self, device: torch.device | str) -> FacePairs:
        """The same pairs with all tensors on ``device``."""
        return replace(
            self,
            gallery=self.gallery.to(device),
            probe=self.probe.to(device),
            genuine=self.genuine.to(device),
        )


def _read_protocol(csv_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next((line for line in reader if any(v.strip() for v in line)), None)
        if header is None:
            raise ValueError(
                f"protocol {csv_path} is empty; expected a header line with the columns G,P,T"
            )
        header = [h.strip() for h in header]
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise ValueError(
                f"protocol {csv_path} lacks the column(s) {missing}; found {header}. The format is a "
                "CSV with header G,P,T (gallery path, probe path, 1 = genuine / 0 = impostor), "
                "optionally followed by more columns"
            )
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise ValueError(f"protocol {csv_path} repeats the column(s) {dupes}")
        rows = []
        for values in reader:
            line_no = reader.line_num
            if not any(v.strip() for v in values):
                continue  # blank line
            if len(values) != len(header):
                raise ValueError(
                    f"protocol {csv_path}, line {line_no}: {len(values)} fields for {len(header)} columns"
                )
            row = {h: v.strip() for h, v in zip(header, values)}
            row["__line__"] = str(line_no)
            rows.append(row)
    if not rows:
        raise ValueError(f"protocol {csv_path} has a header but no pairs")
    return header, rows


def _parse_labels(rows: list[dict[str, str]], csv_path: Path) -> list[bool]:
    labels, bad = [], []
    for row in rows:
        t = row["T"].lower()
        if t in _TRUE:
            labels.append(True)
        elif t in _FALSE:
            labels.append(False)
        else:
            bad.append(f"line {row['__line__']}: {row['T']!r}")
    if bad:
        shown = "; ".join(bad[:10]) + (f"; ... ({len(bad)} in all)" if len(bad) > 10 else "")
        raise ValueError(
            f"protocol {csv_path}: column T must be 1 (genuine) or 0 (impostor), got {shown}"
        )
    return labels


def _parse_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (int(size), int(size))
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        hw = (int(size[0]), int(size[1]))
    else:
        raise TypeError(f"size must be an int or a (height, width) pair, got {size!r}")
    if min(hw) <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return hw


def h5_crop_name(protocol_path: str) -> str:
    """The authors' HDF5 file name of a protocol path: extension dropped, ``/`` → ``_``,
    ``.h5`` appended (``"ARface/glass/m-001-1.bmp"`` → ``"ARface_glass_m-001-1.h5"``)."""
    stem = protocol_path.rsplit(".", 1)[0] if "." in Path(protocol_path).name else protocol_path
    return stem.replace("\\", "/").replace("/", "_") + ".h5"


def _read_h5_crop(path: Path) -> np.ndarray:
    """The ``data`` dataset of an HDF5 crop as an H × W × 3 float32 array in [0, 1]."""
    import h5py  # lazy: only needed for the authors' HDF5 crops

    try:
        with h5py.File(path, "r") as fh:
            if "data" not in fh:
                raise ValueError(
                    f"HDF5 crop {path} has no dataset 'data' (found {sorted(fh.keys())})"
                )
            arr = np.asarray(fh["data"][()])
    except OSError as e:
        raise ValueError(f"cannot read HDF5 crop {path}: {e}") from e
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"HDF5 crop {path}: 'data' must be H x W x 3 (RGB), got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"HDF5 crop {path}: 'data' must be uint8 or float, got {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(
            f"HDF5 crop {path}: float 'data' must be finite and in [0, 1], got range "
            f"[{float(np.nanmin(arr)):.9g}, {float(np.nanmax(arr)):.9g}]"
        )
    return arr


def _load_image(path: Path, size: tuple[int, int] | None) -> Tensor:
    """One image file or HDF5 crop (``.h5``) as a (3, H, W) float tensor in [0, 1] on the
    CPU, resized if asked."""
    if path.suffix.lower() == ".h5":
        x = torch.from_numpy(np.ascontiguousarray(_read_h5_crop(path))).permute(2, 0, 1)
    else:  # the one image reader: bit depth, modes, errors naming the file
        x = load_image(path)
    if size is not None and tuple(x.shape[1:]) != size:
        # Antialiased bilinear: area-like averaging when shrinking, smooth when enlarging.
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[
            0
        ]
        x = x.clamp_(0.0, 1.0)
    return x


def load_face_protocol(
    csv_path: str | Path,
    root: str | Path | None = None,
    *,
    size: int | tuple[int, int] | None = None,
    device: torch.device | str | None = None,
    rows: slice | Sequence[int] | None = None,
    progress: bool | None = None,
) -> FacePairs:
    """Load the pairs of a G, P, T protocol CSV over a folder of aligned face crops.

    ``T`` also accepts ``true``/``false``; further columns are kept (``variation`` becomes
    :attr:`FacePairs.variation`, others land in :attr:`FacePairs.extra`).

    Args:
        csv_path: the protocol file.
        root: folder that relative paths in ``G`` and ``P`` are resolved against; default: the
            folder holding the CSV. Absolute paths are used as they are. A path that does
            not exist is looked for as the authors' HDF5 crop :func:`h5_crop_name` in root.
        size: resize every image to ``size`` x ``size`` (or (height, width)) with antialiased
            bilinear interpolation, e.g. 112 for IResNet/ArcFace-style networks or 150 for dlib's
            network. None keeps the files' size, which must then be the same for all of them.
        device: where the returned tensors live (default CPU).
        rows: load only these protocol rows (a slice or row indices, 0 = first pair), e.g. to take
            a part of a large real protocol; only the files those pairs need are read.
        progress: show a tqdm bar while reading images; None = only for 200 files or more.

    Returns:
        :class:`FacePairs` with gallery/probe (N, 3, S, S) float in [0, 1] RGB on ``device`` and
        ``genuine`` (N,) bool. Each distinct file is read and resized once, however many pairs use it.

    Raises:
        FileNotFoundError: the CSV, or any image it names, does not exist (all missing images are
            listed, with the root they were looked for in).
        ValueError: missing columns, T values other than 0/1, an empty protocol, or images of
            different sizes with ``size=None``.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"protocol file {csv_path} does not exist")
    root_dir = csv_path.resolve().parent if root is None else Path(root)
    hw = _parse_size(size)
    header, table = _read_protocol(csv_path)
    if rows is not None:
        picked = range(len(table))[rows] if isinstance(rows, slice) else [int(i) for i in rows]
        try:
            table = [table[i] for i in picked]
        except IndexError:
            raise IndexError(
                f"rows {rows!r} out of range for {len(table)} pairs in {csv_path}"
            ) from None
        if not table:
            raise ValueError(f"rows {rows!r} selects no pair of {csv_path}")
    for row in table:
        for col in ("G", "P"):
            if not row[col]:
                raise ValueError(f"protocol {csv_path}, line {row['__line__']}: empty {col} path")
    genuine = _parse_labels(table, csv_path)

    # Each distinct file once, in first-use order.
    files: dict[str, int] = {}
    for row in table:
        for col in ("G", "P"):
            files.setdefault(row[col], len(files))
    paths: dict[str, Path] = {}
    missing = []
    for name in files:
        path = Path(name) if Path(name).is_absolute() else root_dir / name
        h5 = root_dir / h5_crop_name(name)
        if path.is_file():
            paths[name] = path
        elif h5.is_file():
            paths[name] = h5
        else:
            missing.append(f"{path} (nor the HDF5 crop {h5.name})")
    if missing:
        shown = "\n  ".join(missing[:50]) + (
            f"\n  ... ({len(missing)} in all)" if len(missing) > 50 else ""
        )
        raise FileNotFoundError(
            f"{len(missing)} image file(s) named in {csv_path} do not exist (relative paths are "
            f"resolved against root={root_dir}; pass root= to change it):\n  {shown}"
        )

    show = len(files) >= _PROGRESS_MIN_FILES if progress is None else progress
    images = [
        _load_image(paths[name], hw)
        for name in tqdm(files, desc="loading face images", disable=not show, leave=False)
    ]
    shapes = sorted({tuple(x.shape[1:]) for x in images})
    if len(shapes) > 1:
        raise ValueError(
            f"the images of {csv_path} have different sizes {shapes[:5]}; pass size= to resize them "
            "(e.g. size=112 for IResNet, size=150 for dlib)"
        )
    dev = torch.device("cpu") if device is None else torch.device(device)
    stack = torch.stack(images).to(dev)
    g_idx = torch.tensor([files[row["G"]] for row in table], device=dev)
    p_idx = torch.tensor([files[row["P"]] for row in table], device=dev)
    others = [h for h in header if h not in _REQUIRED and h != "variation"]
    return FacePairs(
        gallery=stack[g_idx],
        probe=stack[p_idx],
        genuine=torch.tensor(genuine, dtype=torch.bool, device=dev),
        gallery_files=[row["G"] for row in table],
        probe_files=[row["P"] for row in table],
        variation=[row["variation"] for row in table] if "variation" in header else None,
        extra={h: [row[h] for row in table] for h in others},
        root=root_dir,
    )


def load_sample_faces(
    subset: str,
    *,
    size: int | tuple[int, int] | None = None,
    padding: float = SAMPLE_CHIP_PADDING,
    device: torch.device | str | None = None,
) -> FacePairs:
    """Load one of the bundled stand-in protocols (``data/faces/protocols/<subset>.csv``).

    Args:
        subset: ``"occlusion"`` (AR face stand-in: sunglasses, scarf, face masks drawn on the probe),
            ``"resolution"`` (SCface stand-in: probe downsampled x4, x8, x16 and upsampled back) or
            ``"pose"`` (CFP-FP stand-in: different photos of the same person).
        size: resize the 150x150 dlib-aligned chips, e.g. 112 for IResNet; None keeps 150.
        padding: the framing, as dlib's chip padding (the stored chips have 0.25): a larger
            value shows the face smaller, the stored chip scaled by 1.5 / (1 + 2·padding)
            and centred on a black square (nothing is known outside the stored chip); a
            smaller one crops the centre. FaceNet (trained on loose detector crops) gets
            0.35 in notebooks 03/04: on these pairs it widens the genuine/impostor gap of
            every subset over a plain resize (``data/faces/README.md``).
        device: where the tensors live (default CPU).

    These are small stand-ins built from photos in registry packages, not the paper's datasets;
    see ``data/faces/README.md``.
    """
    if subset not in SAMPLE_FACE_SUBSETS:
        raise ValueError(
            f"unknown sample face subset {subset!r}; choose one of {list(SAMPLE_FACE_SUBSETS)} "
            "(for other data use load_face_protocol(csv_path, root))"
        )
    csv_path = FACES_DIR / "protocols" / f"{subset}.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"bundled protocol {csv_path} is missing; the face data lives in the repository's "
            "data/faces/ (rebuild it with scripts/make_face_chips.py)"
        )
    if padding == SAMPLE_CHIP_PADDING:
        return load_face_protocol(csv_path, FACES_DIR, size=size, device=device)
    if not 0 <= padding <= 2:
        raise ValueError(f"padding must be in [0, 2] (the chips have 0.25), got {padding}")
    if size is not None and not isinstance(size, int):
        raise ValueError(f"padding != 0.25 needs a square size (an int), got size={size!r}")
    pairs = load_face_protocol(csv_path, FACES_DIR, device=device)
    side = pairs.gallery.shape[-1] if size is None else int(size)
    reframe = partial(_reframe, scale=(1 + 2 * SAMPLE_CHIP_PADDING) / (1 + 2 * padding), side=side)
    return replace(pairs, gallery=reframe(pairs.gallery), probe=reframe(pairs.probe))


def _reframe(x: Tensor, scale: float, side: int) -> Tensor:
    """(N, 3, S, S) chips shown ``scale`` times as large in a ``side`` square (black outside)."""
    if scale < 1:
        inner = round(side * scale)
        x = F.interpolate(x, size=inner, mode="bilinear", antialias=True).clamp_(0, 1)
        lo = (side - inner) // 2
        return F.pad(x, (lo, side - inner - lo, lo, side - inner - lo))
    keep = round(x.shape[-1] / scale)
    lo = (x.shape[-1] - keep) // 2
    x = x[..., lo : lo + keep, lo : lo + keep]
    return F.interpolate(x, size=side, mode="bilinear", antialias=True).clamp_(0, 1)

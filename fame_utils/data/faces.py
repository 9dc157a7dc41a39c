"""Face-verification pairs: G, P, T protocol CSVs (gallery, probe, 1 = genuine / 0 = impostor)
over aligned crops, as the paper's AR face, SCface and CFP-FP (Sec. 4, Table 1), and the
bundled stand-ins in ``data/faces/`` (``data/faces/README.md``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from .items import Rows
from .transforms import load_image

#: The bundled face data: aligned 150x150 chips, their variations and the pair protocols.
FACES_DIR: Path = Path(__file__).resolve().parents[2] / "data" / "faces"
#: dlib's chip padding of the bundled chips (``get_face_chip(img, shape, 150, 0.25)``).
SAMPLE_CHIP_PADDING = 0.25
#: Names of the bundled protocols, stand-ins for AR face, SCface and CFP-FP.
SAMPLE_FACE_SUBSETS: tuple[str, ...] = ("occlusion", "resolution", "pose")

_LABELS = {"1": True, "true": True, "0": False, "false": False}


@dataclass
class FacePairs(Rows):
    """One protocol's pairs in CSV order: ``gallery``, ``probe`` (N, 3, H, W) float RGB in [0, 1],
    ``genuine`` (N,) bool, the ``G`` and ``P`` entries and the ``variation`` column or None."""

    gallery: Tensor
    probe: Tensor
    genuine: Tensor
    gallery_files: list[str]
    probe_files: list[str]
    variation: list[str] | None = None

    def balanced(self, n: int | None) -> FacePairs:
        """The first ceil(n/2) genuine and floor(n/2) impostor pairs in protocol order (all
        for ``None``)."""
        if n is None:
            return self
        g = self.genuine.cpu()
        keep = torch.cat([g.nonzero()[: (n + 1) // 2], (~g).nonzero()[: n // 2]]).flatten()
        return self.subset(keep.sort().values)

    def select(
        self, *, variation: str | Sequence[str] | None = None, genuine: bool | None = None
    ) -> FacePairs:
        """The pairs of the given variation(s) and/or label, in protocol order."""
        keep = np.ones(len(self), dtype=bool)
        if variation is not None:
            wanted = {variation} if isinstance(variation, str) else set(variation)
            if wanted - set(self.variation or ()):
                raise ValueError(
                    f"unknown variation(s) {sorted(wanted - set(self.variation or ()))}; this "
                    f"protocol's variation column has {sorted(set(self.variation or ()))}"
                )
            keep &= np.isin(self.variation, list(wanted))
        if genuine is not None:
            keep &= self.genuine.cpu().numpy() == bool(genuine)
        return self.subset(keep)


def _read_protocol(csv_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the non-blank rows of a G, P, T CSV, checked."""
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in ("G", "P", "T") if c not in header]
        if missing:
            raise ValueError(
                f"protocol {csv_path} lacks the column(s) {missing}; found "
                f"{header or 'an empty file'}. The format is a CSV with header G,P,T (gallery "
                "path, probe path, 1 = genuine / 0 = impostor), optionally followed by more columns"
            )
        rows, bad = [], []
        for values in reader:
            where = f"protocol {csv_path}, line {reader.line_num}"
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise ValueError(f"{where}: {len(values)} fields for {len(header)} columns")
            row = {h: v.strip() for h, v in zip(header, values)}
            if not (row["G"] and row["P"]):
                raise ValueError(f"{where}: empty {'P' if row['G'] else 'G'} path")
            if row["T"].lower() not in _LABELS:
                bad.append(f"line {reader.line_num}: {row['T']!r}")
            rows.append(row)
    if bad:
        raise ValueError(
            f"protocol {csv_path}: column T must be 1 (genuine) or 0 (impostor), got "
            + "; ".join(bad[:10])
        )
    if not rows:
        raise ValueError(f"protocol {csv_path} has a header but no pairs")
    return header, rows


def h5_crop_name(protocol_path: str) -> str:
    """The authors' HDF5 file name of a protocol path: extension dropped, ``/`` → ``_``,
    ``.h5`` appended (``"ARface/glass/m-001-1.bmp"`` → ``"ARface_glass_m-001-1.h5"``)."""
    stem = protocol_path.rsplit(".", 1)[0] if "." in Path(protocol_path).name else protocol_path
    return stem.replace("\\", "/").replace("/", "_") + ".h5"


def _load_image(path: Path, size: int | None) -> Tensor:
    """An image file or HDF5 crop (``data``: H × W × 3 RGB) as (3, H, W) resized to ``size``."""
    if path.suffix.lower() != ".h5":
        x = load_image(path)
    else:
        import h5py  # lazy: only needed for the authors' HDF5 crops

        with h5py.File(path, "r") as fh:
            if "data" not in fh:
                raise ValueError(f"HDF5 crop {path} has no dataset 'data' (found {list(fh)})")
            arr = np.asarray(fh["data"][()])
        if arr.ndim != 3 or arr.shape[2] != 3 or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"HDF5 crop {path}: 'data' must be H x W x 3 (RGB), got {arr.shape}")
        x = torch.from_numpy(arr / 255.0 if arr.dtype == np.uint8 else arr).float()
        x = x.permute(2, 0, 1).contiguous()
    if size is not None and tuple(x.shape[1:]) != (size, size):
        x = F.interpolate(x[None], size=size, mode="bilinear", antialias=True)[0].clamp_(0, 1)
    return x


def load_face_protocol(
    csv_path: str | Path,
    root: str | Path | None = None,
    *,
    size: int | None = None,
    device: torch.device | str | None = None,
) -> FacePairs:
    """The pairs of a G, P, T protocol CSV (``T`` 0/1 or false/true; optional ``variation``)
    on ``device`` (default CPU). Relative paths resolve against ``root`` (default: the CSV's
    folder), a missing file as the authors' HDF5 crop :func:`h5_crop_name`; ``size`` resizes
    (antialiased bilinear; 112 for IResNet). ``FileNotFoundError`` lists missing files;
    ``ValueError``: a bad column, T other than 0/1, no pairs, unequal sizes without ``size``."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"protocol file {csv_path} does not exist")
    root_dir = csv_path.resolve().parent if root is None else Path(root)
    if size is not None and (not isinstance(size, int) or size < 1):
        raise TypeError(f"size must be a positive int (the side in pixels), got {size!r}")
    header, table = _read_protocol(csv_path)
    files = dict.fromkeys(r[c] for r in table for c in "GP")  # each file once, first-use order
    paths, missing = {}, []
    for name in files:
        path = Path(name) if Path(name).is_absolute() else root_dir / name
        h5 = root_dir / h5_crop_name(name)
        if path.is_file() or h5.is_file():
            paths[name] = path if path.is_file() else h5
        else:
            missing.append(f"{path} (nor the HDF5 crop {h5.name})")
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image file(s) named in {csv_path} do not exist (relative paths are "
            f"resolved against root={root_dir}; pass root= to change it):\n  "
            + "\n  ".join(missing[:50])
        )
    images = [
        _load_image(paths[name], size)
        for name in tqdm(files, desc="loading face images", disable=len(files) < 200, leave=False)
    ]
    shapes = sorted({tuple(x.shape[1:]) for x in images})
    if len(shapes) > 1:
        raise ValueError(
            f"the images of {csv_path} have different sizes {shapes[:5]}; pass size= to resize "
            "them (e.g. size=112 for IResNet, size=150 for dlib)"
        )
    dev = torch.device("cpu") if device is None else torch.device(device)
    stack = torch.stack(images).to(dev)
    position = {name: i for i, name in enumerate(files)}
    return FacePairs(
        gallery=stack[[position[r["G"]] for r in table]],
        probe=stack[[position[r["P"]] for r in table]],
        genuine=torch.tensor([_LABELS[r["T"].lower()] for r in table], device=dev),
        gallery_files=[r["G"] for r in table],
        probe_files=[r["P"] for r in table],
        variation=[r["variation"] for r in table] if "variation" in header else None,
    )


def load_sample_faces(
    subset: str,
    *,
    size: int | None = None,
    padding: float = SAMPLE_CHIP_PADDING,
    device: torch.device | str | None = None,
) -> FacePairs:
    """The bundled stand-in protocol ``"occlusion"`` (AR face), ``"resolution"`` (SCface) or
    ``"pose"`` (CFP-FP); ``size`` resizes the 150x150 chips; ``padding`` reframes them as dlib's
    chip padding (stored: 0.25): scaled by 1.5 / (1 + 2·padding), centred on black or cropped."""
    if subset not in SAMPLE_FACE_SUBSETS:
        raise ValueError(
            f"unknown sample face subset {subset!r}; choose one of {list(SAMPLE_FACE_SUBSETS)} "
            "(for other data use load_face_protocol(csv_path, root))"
        )
    csv_path = FACES_DIR / "protocols" / f"{subset}.csv"
    if padding == SAMPLE_CHIP_PADDING:
        return load_face_protocol(csv_path, FACES_DIR, size=size, device=device)
    if not 0 <= padding <= 2:
        raise ValueError(f"padding must be in [0, 2] (the chips have 0.25), got {padding}")
    pairs = load_face_protocol(csv_path, FACES_DIR, device=device)
    side = pairs.gallery.shape[-1] if size is None else int(size)
    inner = round(side * (1 + 2 * SAMPLE_CHIP_PADDING) / (1 + 2 * padding))
    x = torch.cat([pairs.gallery, pairs.probe])
    x = F.interpolate(x, size=inner, mode="bilinear", antialias=True).clamp_(0, 1)
    gallery, probe = TF.center_crop(x, side).chunk(2)  # on black or cropped
    return replace(pairs, gallery=gallery, probe=probe)

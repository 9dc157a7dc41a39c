"""The bundled object photos (``data/objects/``, sources in ``SOURCES.md``) with ImageNet
classes and hand-annotated boxes in ``annotations.csv``, loaded as classifier inputs with their
boxes mapped through the same Resize + CenterCrop for the IoU and ROAD metrics (Sec. 4.3).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .items import Rows
from .transforms import BoxConvention, load_image, map_boxes, resize_center_crop

#: ``data/objects`` of the repository (found relative to this package).
OBJECTS_DIR: Path = Path(__file__).resolve().parents[2] / "data" / "objects"
#: Header of ``annotations.csv``: class_index is the ImageNet-1k index (-1: no ImageNet class),
#: x0, y0, x1, y1 the main object's box in the stored image's pixels (exclusive x1, y1).
ANNOTATION_COLUMNS = ("file", "class_index", "class_name", "x0", "y0", "x1", "y1", "box_source")


@dataclass(frozen=True)
class ObjectAnnotation:
    """One row of ``annotations.csv``; ``name`` is the file stem, ``labelled`` whether it has
    an ImageNet class, ``path`` the image file."""

    file: str
    class_index: int
    class_name: str
    box: tuple[float, float, float, float]
    box_source: str
    path: Path

    @property
    def name(self) -> str:
        return Path(self.file).stem

    @property
    def labelled(self) -> bool:
        return self.class_index >= 0


def _parse_row(row: dict[str, str], folder: Path) -> ObjectAnnotation:
    if None in row or None in row.values():
        raise ValueError("expected 8 fields")
    file = row["file"].strip()
    if not file or Path(file).name != file:
        raise ValueError(f"file must be a bare file name, got {file!r}")
    class_index = int(row["class_index"])
    if not -1 <= class_index <= 999:
        raise ValueError(f"class_index must be in 0..999 or -1, got {class_index}")
    box = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"non-finite box {box}")
    if box[0] < 0 or box[1] < 0 or not (box[0] < box[2] and box[1] < box[3]):
        raise ValueError(f"box must satisfy 0 <= x0 < x1 and 0 <= y0 < y1, got {box}")
    name, source = row["class_name"].strip(), row["box_source"].strip()
    return ObjectAnnotation(file, class_index, name, box, source, folder / file)


def read_annotations(root: str | Path | None = None) -> list[ObjectAnnotation]:
    """Every row of ``<root>/annotations.csv`` (default :data:`OBJECTS_DIR`), validated:
    ``FileNotFoundError`` for a missing folder or CSV, ``ValueError`` naming a bad header,
    a malformed row (by line and file) or a repeated file."""
    folder = OBJECTS_DIR if root is None else Path(root)
    csv_path = folder / "annotations.csv"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"object image folder not found: {folder}. The bundled images live in the "
            "repository's data/objects/ (fame_utils must be used from a source checkout, e.g. "
            "`pip install -e .`); rebuild them with `python scripts/fetch_object_images.py`."
        )
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path} not found")
    rows: dict[str, ObjectAnnotation] = {}
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != ANNOTATION_COLUMNS:
            raise ValueError(
                f"{csv_path}: header must be {','.join(ANNOTATION_COLUMNS)}, got {reader.fieldnames}"
            )
        for row in reader:
            try:
                ann = _parse_row(row, folder)
            except ValueError as err:
                where = f"{csv_path}, line {reader.line_num} ({row.get('file') or '?'})"
                raise ValueError(f"malformed row in {where}: {err}") from None
            if ann.name in rows:
                raise ValueError(f"{csv_path}: image name {ann.name!r} appears more than once")
            rows[ann.name] = ann
    return list(rows.values())


@dataclass
class ObjectSamples(Rows):
    """Preprocessed object images: ``images`` (N, 3, crop, crop) float in [0, 1] RGB,
    ``labels`` (N,) long ImageNet indices (-1: none), ``boxes`` (N, 4) float xyxy in crop
    pixels, file stems ``names`` and torchvision ``class_names``. Indexing by position, slice,
    name (``samples["coffee"]``), list or tensor returns :class:`ObjectSamples`."""

    images: Tensor
    labels: Tensor
    boxes: Tensor
    names: list[str]
    class_names: list[str]

    def index(self, key: str) -> int:
        """Position of an image given its stem (``"coffee"``) or file name (``"coffee.png"``)."""
        try:
            return self.names.index(Path(key).stem)
        except ValueError:
            raise KeyError(f"no sample named {key!r}; available: {', '.join(self.names)}") from None

    def __getitem__(self, key: int | slice | str | Sequence[int | str] | Tensor) -> ObjectSamples:
        if isinstance(key, str):
            key = [key]
        if isinstance(key, (list, tuple)):
            key = [self.index(k) if isinstance(k, str) else int(k) for k in key]
        return self.subset(key)


def load_sample_objects(
    names: Sequence[str] | None = None,
    *,
    resize: int = 256,
    crop: int = 224,
    convention: BoxConvention = "aspect",
    device: torch.device | str | None = None,
    include_unlabeled: bool = False,
    root: str | Path | None = None,
    synthetic: bool = False,
) -> ObjectSamples:
    """The bundled object images through Resize(``resize``) + CenterCrop(``crop``) on
    ``device``, boxes mapped alike (:mod:`~fame_utils.data.transforms`, ``convention``: see
    :func:`~fame_utils.data.transforms.map_boxes`). 256/224 is EfficientNet-Lite0's
    preprocessing; the paper's ImageNet protocol is 232/224 with ``convention="per_axis"``.

    Args:
        names: image stems or file names, in this order (``None``: every labelled image).
        include_unlabeled: also load ``class_index = -1`` rows (label -1).
        root: another folder with the same layout (default :data:`OBJECTS_DIR`).
        synthetic: also load ``<root>/composites/`` after the photos: small-object composites
            with exact boxes (``scripts/make_object_composites.py``).

    Raises:
        FileNotFoundError: the folder, the CSV or image files are missing (all listed).
        ValueError: a malformed CSV row (named), an unknown name, a box outside its image,
            or a ``-1`` row asked for by name without ``include_unlabeled``.
    """
    folder = OBJECTS_DIR if root is None else Path(root)
    rows = read_annotations(folder) + (read_annotations(folder / "composites") if synthetic else [])
    by_name = {r.name: r for r in rows}
    if names is None:
        chosen = [r for r in rows if include_unlabeled or r.labelled]
    else:
        names = [names] if isinstance(names, str) else names
        unknown = [n for n in names if Path(n).stem not in by_name]
        if unknown:
            raise ValueError(f"unknown sample name(s) {unknown}; available: {', '.join(by_name)}")
        chosen = [by_name[Path(n).stem] for n in names]
        flagged = [r.name for r in chosen if not r.labelled]
        if flagged and not include_unlabeled:
            raise ValueError(
                f"{flagged} have no ImageNet class (class_index = -1); "
                "pass include_unlabeled=True to load them with label -1"
            )
    if not chosen:
        raise ValueError(f"no images selected from {folder / 'annotations.csv'}")
    missing = [r.file for r in chosen if not r.path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image file(s) listed in {folder / 'annotations.csv'} are missing "
            f"from {folder}: {', '.join(missing)}"
        )
    dev = torch.device("cpu") if device is None else torch.device(device)
    images, boxes = [], []
    for r in chosen:
        img = load_image(r.path)
        h, w = img.shape[-2:]
        if r.box[2] > w + 1e-3 or r.box[3] > h + 1e-3:
            raise ValueError(
                f"box {r.box} of {r.file} lies outside the {w}x{h} image (annotations.csv)"
            )
        images.append(resize_center_crop(img.to(dev), resize, crop))
        boxes.append(map_boxes(torch.tensor([r.box]), (h, w), resize, crop, convention))
    return ObjectSamples(
        images=torch.stack(images),
        labels=torch.tensor([r.class_index for r in chosen], dtype=torch.long, device=dev),
        boxes=torch.cat(boxes).to(dev),
        names=[r.name for r in chosen],
        class_names=[r.class_name for r in chosen],
    )

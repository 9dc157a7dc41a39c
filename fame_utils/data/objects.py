"""The bundled object photos (``data/objects/``) with ImageNet classes and hand-annotated
boxes (``annotations.csv``), boxes mapped with the pixels for IoU and ROAD (Sec. 4.3)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .items import Rows
from .transforms import BoxConvention, load_crop

#: ``data/objects`` of the repository (found relative to this package).
OBJECTS_DIR: Path = Path(__file__).resolve().parents[2] / "data" / "objects"
#: Header of ``annotations.csv``: class_index -1 is no ImageNet class; the box in file pixels.
ANNOTATION_COLUMNS = ("file", "class_index", "class_name", "x0", "y0", "x1", "y1", "box_source")


@dataclass(frozen=True)
class ObjectAnnotation:
    """One row of ``annotations.csv``, ``path`` its image file."""

    file: str
    class_index: int
    class_name: str
    box: tuple[float, float, float, float]
    box_source: str
    path: Path


def read_annotations(folder: Path = OBJECTS_DIR) -> list[ObjectAnnotation]:
    """Every row of ``<folder>/annotations.csv``; ``FileNotFoundError`` without the folder."""
    if not (folder / "annotations.csv").is_file():
        raise FileNotFoundError(
            f"object annotations not found: {folder / 'annotations.csv'}. The bundled images "
            "live in the repository's data/objects/ (use a source checkout: `pip install -e .`)."
        )
    with (folder / "annotations.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [
        ObjectAnnotation(
            file=r["file"],
            class_index=int(r["class_index"]),
            class_name=r["class_name"],
            box=tuple(float(r[k]) for k in ("x0", "y0", "x1", "y1")),
            box_source=r["box_source"],
            path=folder / r["file"],
        )
        for r in rows
    ]


@dataclass
class ObjectSamples(Rows):
    """``images`` (N, 3, crop, crop) float in [0, 1] RGB, ``labels`` (N,) long ImageNet
    indices (-1: none), ``boxes`` (N, 4) xyxy crop pixels, file stems ``names`` and
    ``class_names``; indexing selects rows (:meth:`~fame_utils.data.items.Rows.subset`)."""

    images: Tensor
    labels: Tensor
    boxes: Tensor
    names: list[str]
    class_names: list[str]

    __getitem__ = Rows.subset


def load_sample_objects(
    names: Sequence[str] | None = None,
    *,
    resize: int = 256,
    crop: int = 224,
    convention: BoxConvention = "aspect",
    device: torch.device | str | None = None,
    synthetic: bool = False,
) -> ObjectSamples:
    """The bundled images ``names`` (stems or file names, in this order; ``None``: every one
    with an ImageNet class, others get label -1) through :func:`~fame_utils.data.transforms.
    resize_crop` on ``device`` (256/224: EfficientNet-Lite0's preprocessing); ``synthetic``
    adds the small-object ``composites/``. ``FileNotFoundError`` lists missing files;
    ``ValueError`` for an unknown name."""
    composites = read_annotations(OBJECTS_DIR / "composites") if synthetic else []
    rows = read_annotations() + composites
    by_name = {Path(r.file).stem: r for r in rows}
    if names is None:
        chosen = [r for r in rows if r.class_index >= 0]
    else:
        names = [names] if isinstance(names, str) else names
        unknown = [n for n in names if Path(n).stem not in by_name]
        if unknown:
            raise ValueError(f"unknown sample name(s) {unknown}; available: {', '.join(by_name)}")
        chosen = [by_name[Path(n).stem] for n in names]
    if not chosen:
        raise ValueError("names is empty; pass None for every labelled image")
    missing = [str(r.path) for r in chosen if not r.path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} bundled image file(s) missing: {missing}")
    dev = torch.device("cpu") if device is None else torch.device(device)
    images, boxes = zip(*(load_crop(r.path, r.box, resize, crop, convention, dev) for r in chosen))
    return ObjectSamples(
        images=torch.stack(images),
        labels=torch.tensor([r.class_index for r in chosen], dtype=torch.long, device=dev),
        boxes=torch.stack(boxes).to(dev),
        names=[Path(r.file).stem for r in chosen],
        class_names=[r.class_name for r in chosen],
    )

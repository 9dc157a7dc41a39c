"""The bundled object images with ImageNet classes and hand-annotated boxes.

``data/objects/`` (at the repository root) holds real, redistributable photographs taken
from registry packages (scikit-image, scikit-learn, matplotlib, Ultralytics, imgaug and
Debian's darknet and opencv-doc; see ``data/objects/SOURCES.md`` and
``scripts/fetch_object_images.py``) and one CSV, ``annotations.csv``, with columns

``file, class_index, class_name, x0, y0, x1, y1, box_source``

- ``class_index``: ImageNet-1k index (0–999) of the main object, ``class_name`` its name in
  torchvision's category list. Objects that no ImageNet class names (the quokka, a red
  apple, a swallowtail) have ``class_index = -1``; :func:`load_sample_objects` skips these
  rows unless ``include_unlabeled=True``.
- ``x0, y0, x1, y1``: box of the main object in the stored image's pixels (top-left,
  exclusive bottom-right). Annotated by hand for this project by looking at each image,
  except the quokka's, which is imgaug's ``quokka_annotations.json`` box.

:func:`load_sample_objects` returns them preprocessed like a classifier input
(Resize + CenterCrop) with the boxes mapped through the same geometry
(:mod:`fame_utils.data.transforms`), ready for the IoU and ROAD metrics (paper Sec. 4.3).
"""

from __future__ import annotations

import csv
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .transforms import BoxConvention, box_mask, load_image, map_boxes, resize_center_crop

__all__ = [
    "OBJECTS_DIR",
    "ANNOTATION_COLUMNS",
    "ObjectAnnotation",
    "ObjectSamples",
    "objects_dir",
    "read_annotations",
    "load_sample_objects",
]

#: ``data/objects`` of the repository (found relative to this package).
OBJECTS_DIR: Path = Path(__file__).resolve().parents[2] / "data" / "objects"
#: Header of ``annotations.csv``, in order.
ANNOTATION_COLUMNS: tuple[str, ...] = (
    "file",
    "class_index",
    "class_name",
    "x0",
    "y0",
    "x1",
    "y1",
    "box_source",
)


@dataclass(frozen=True)
class ObjectAnnotation:
    """One row of ``annotations.csv``; the box is in the stored image's pixels."""

    file: str
    class_index: int
    class_name: str
    box: tuple[float, float, float, float]
    box_source: str

    @property
    def name(self) -> str:
        """File name without extension (``"coffee"`` for ``coffee.png``)."""
        return Path(self.file).stem

    @property
    def labelled(self) -> bool:
        """Whether the object has an ImageNet class (``class_index >= 0``)."""
        return self.class_index >= 0


def objects_dir(root: str | Path | None = None) -> Path:
    """The image folder: ``root`` if given, else :data:`OBJECTS_DIR`; checked to exist.

    Raises:
        FileNotFoundError: the folder or its ``annotations.csv`` is missing.
    """
    folder = OBJECTS_DIR if root is None else Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"object image folder not found: {folder}. The bundled images live in the "
            "repository's data/objects/ (fame_utils must be used from a source checkout, e.g. "
            "`pip install -e .`); rebuild them with `python scripts/fetch_object_images.py`."
        )
    if not (folder / "annotations.csv").is_file():
        raise FileNotFoundError(f"{folder / 'annotations.csv'} not found")
    return folder


def _parse_row(row: dict[str, str], line: int, csv_path: Path) -> ObjectAnnotation:
    where = f"{csv_path}, line {line} ({row.get('file') or '?'})"
    try:
        file = (row["file"] or "").strip()
        if not file:
            raise ValueError("empty file name")
        if Path(file).name != file:
            raise ValueError(f"file must be a bare file name, got {file!r}")
        raw_index = (row["class_index"] or "").strip()
        class_index = int(raw_index)
        if not -1 <= class_index <= 999:
            raise ValueError(f"class_index must be in 0..999 or -1, got {class_index}")
        box = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
        if not all(math.isfinite(v) for v in box):
            raise ValueError(f"non-finite box {box}")
        x0, y0, x1, y1 = box
        if x0 < 0 or y0 < 0 or not (x0 < x1 and y0 < y1):
            raise ValueError(f"box must satisfy 0 <= x0 < x1 and 0 <= y0 < y1, got {box}")
        class_name = (row["class_name"] or "").strip()
        box_source = (row["box_source"] or "").strip()
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"malformed row in {where}: {err}") from None
    return ObjectAnnotation(file, class_index, class_name, box, box_source)  # type: ignore[arg-type]


def read_annotations(root: str | Path | None = None) -> list[ObjectAnnotation]:
    """Parse and validate ``annotations.csv`` (all rows, flagged ``-1`` rows included).

    Raises:
        FileNotFoundError: folder or CSV missing.
        ValueError: wrong header, a malformed row (named by line and file), duplicate files.
    """
    folder = objects_dir(root)
    csv_path = folder / "annotations.csv"
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = tuple(reader.fieldnames or ())
        if header != ANNOTATION_COLUMNS:
            raise ValueError(
                f"{csv_path}: header must be {','.join(ANNOTATION_COLUMNS)}, got {header}"
            )
        rows = []
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise ValueError(
                    f"malformed row in {csv_path}, line {reader.line_num} "
                    f"({row.get('file') or '?'}): expected {len(ANNOTATION_COLUMNS)} fields"
                )
            rows.append(_parse_row(row, reader.line_num, csv_path))
    seen: set[str] = set()
    for ann in rows:
        if ann.name in seen:
            raise ValueError(f"{csv_path}: image name {ann.name!r} appears more than once")
        seen.add(ann.name)
    return rows


@dataclass
class ObjectSamples:
    """Preprocessed object images with labels and boxes in crop pixels.

    Attributes:
        images: (N, 3, crop, crop) float in [0, 1], RGB.
        labels: (N,) long ImageNet indices (-1 for objects without an ImageNet class).
        boxes: (N, 4) float (x0, y0, x1, y1) in crop pixels, exclusive at (x1, y1).
        names: N file stems (``"coffee"``).
        class_names: N class names (torchvision's ImageNet names; the object's own name
            for ``-1`` rows).
    """

    images: Tensor
    labels: Tensor
    boxes: Tensor
    names: list[str]
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def masks(self) -> Tensor:
        """(N, crop, crop) bool box masks (pixel centres inside the box), on the images' device."""
        return box_mask(self.boxes.to(self.images.device), tuple(self.images.shape[-2:]))

    def index(self, key: str) -> int:
        """Position of an image given its stem (``"coffee"``) or file name (``"coffee.png"``)."""
        stem = Path(key).stem
        try:
            return self.names.index(stem)
        except ValueError:
            raise KeyError(f"no sample named {key!r}; available: {', '.join(self.names)}") from None

    def __getitem__(
        self, key: int | slice | str | Sequence[int] | Sequence[str] | Tensor
    ) -> ObjectSamples:
        """Subset by position, slice, name, list of names or positions, or bool/long tensor.

        Always returns an :class:`ObjectSamples` (a single int or name gives length 1).
        """
        if isinstance(key, str):
            idx = [self.index(key)]
        elif isinstance(key, numbers.Integral):
            key, n = int(key), len(self)
            if not -n <= key < n:
                raise IndexError(f"index {key} out of range for {n} samples")
            idx = [key % n]
        elif isinstance(key, slice):
            idx = list(range(len(self)))[key]
        else:
            if isinstance(key, Tensor):
                t = key.detach().cpu()
                idx = (
                    t.nonzero().flatten().tolist()
                    if t.dtype == torch.bool
                    else t.flatten().tolist()
                )
            else:
                items = list(key)
                idx = [self.index(k) if isinstance(k, str) else int(k) for k in items]
            n = len(self)
            for i in idx:
                if not -n <= i < n:
                    raise IndexError(f"index {i} out of range for {n} samples")
            idx = [i % n for i in idx]
        pos = torch.as_tensor(idx, dtype=torch.long)
        return ObjectSamples(
            images=self.images[pos.to(self.images.device)],
            labels=self.labels[pos.to(self.labels.device)],
            boxes=self.boxes[pos.to(self.boxes.device)],
            names=[self.names[i] for i in idx],
            class_names=[self.class_names[i] for i in idx],
        )

    def to(self, device: torch.device | str) -> ObjectSamples:
        """Copy images, labels and boxes to ``device``."""
        return ObjectSamples(
            self.images.to(device),
            self.labels.to(device),
            self.boxes.to(device),
            list(self.names),
            list(self.class_names),
        )


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
    """Load the bundled object images as classifier inputs with boxes mapped to the crop.

    Each image is read with :func:`~fame_utils.data.transforms.load_image`, moved to
    ``device`` and passed through Resize(``resize``, shorter side) + CenterCrop(``crop``)
    there; its box is mapped by :func:`~fame_utils.data.transforms.map_boxes` with the same
    geometry. The defaults (256/224) are the EfficientNet-Lite0 preprocessing; the paper's
    ImageNet protocol is ``resize=232, crop=224`` with ``convention="per_axis"`` to
    reproduce its numbers (Sec. 4.3).

    Args:
        names: image stems or file names to load, in this order (``None``: every labelled
            image, in CSV order).
        resize, crop: preprocessing sizes.
        convention: box mapping, ``"aspect"`` (exact) or ``"per_axis"`` (reference code).
        device: where the tensors go (default CPU).
        include_unlabeled: also load rows with ``class_index = -1`` (label -1). Without it
            they are skipped when ``names`` is None, and asking for one by name raises.
        root: another folder with the same layout (default :data:`OBJECTS_DIR`).
        synthetic: also load ``<root>/composites/`` (same layout): small-object
            composites with exact boxes, marked synthetic in ``data/objects/SOURCES.md``
            (``scripts/make_object_composites.py``), after the photos.

    Returns:
        :class:`ObjectSamples` with ``images`` (N, 3, crop, crop), ``labels`` (N,),
        ``boxes`` (N, 4) on ``device``.

    Raises:
        FileNotFoundError: the folder, the CSV or image files are missing (all missing files
            are listed).
        ValueError: a malformed CSV row (named), an unknown name, a box outside its image,
            or a name whose row has no ImageNet class while ``include_unlabeled`` is False.
    """
    folder = objects_dir(root)
    rows = read_annotations(folder)
    home = {r.name: folder for r in rows}
    if synthetic:
        extra = read_annotations(folder / "composites")
        rows += extra
        home.update({r.name: folder / "composites" for r in extra})
    by_name = {r.name: r for r in rows}
    if names is None:
        chosen = [r for r in rows if include_unlabeled or r.labelled]
    else:
        if isinstance(names, str):
            names = [names]
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
    missing = [r.file for r in chosen if not (home[r.name] / r.file).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image file(s) listed in {folder / 'annotations.csv'} are missing "
            f"from {folder}: {', '.join(missing)}"
        )
    dev = torch.device(device) if device is not None else torch.device("cpu")
    images, boxes = [], []
    for r in chosen:
        img = load_image(home[r.name] / r.file)
        h, w = img.shape[-2:]
        x0, y0, x1, y1 = r.box
        tol = 1e-3
        if x1 > w + tol or y1 > h + tol:
            raise ValueError(
                f"box {r.box} of {r.file} lies outside the {w}x{h} image (annotations.csv)"
            )
        images.append(resize_center_crop(img.to(dev), resize, crop))
        boxes.append(
            map_boxes(torch.tensor([r.box], dtype=torch.float32), (h, w), resize, crop, convention)
        )
    return ObjectSamples(
        images=torch.stack(images),
        labels=torch.tensor([r.class_index for r in chosen], dtype=torch.long, device=dev),
        boxes=torch.cat(boxes).to(dev),
        names=[r.name for r in chosen],
        class_names=[r.class_name for r in chosen],
    )

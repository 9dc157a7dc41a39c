"""ImageNet validation images with their first object's box (paper Sec. 4.3, Table 2).

The paper evaluates on 5000 validation images, 5 per class, taking the class and the box
of the **first object** of each image's annotation, preprocessed with Resize(232)
(shorter side) and CenterCrop(224). ImageNet cannot be downloaded by this package; point
:func:`load_imagenet_val` at a local copy. Files needed (any one layout):

* **validation images** ``ILSVRC2012_val_00000001.JPEG`` … — flat (``val/``,
  ``ILSVRC2012_img_val/``, Kaggle's ``ILSVRC/Data/CLS-LOC/val/``) or in per-synset
  sub-folders (torchvision's ``ImageFolder`` layout); searched recursively;
* **boxes**, either
  - ``LOC_val_solution.csv`` (Kaggle "ImageNet Object Localization Challenge"):
    columns ``ImageId, PredictionString`` with ``"synset x0 y0 x1 y1 synset x0 …"``, or
  - per-image Pascal-VOC XML files ``ILSVRC2012_val_00000001.xml`` (ILSVRC2012
    ``ILSVRC2012_bbox_val_v3.tgz`` → ``val/``, or Kaggle's
    ``ILSVRC/Annotations/CLS-LOC/val/``), ``<object><name>synset</name><bndbox>…``;
* **synset → class index**: ``LOC_synset_mapping.txt`` (Kaggle; line i = ``"nXXXXXXXX
  names"`` of class i), or ``synset_mapping=`` a path to such a file, a list of 1000
  synsets in class order, or a dict. torchvision's ``weights.meta["categories"]`` holds
  only names, not synsets. Without any mapping, when the annotations cover all 1000
  synsets the standard order (sorted synset ids, which is the torchvision/Keras order) is
  used.

Boxes are used as given in the annotation files, ``(xmin, ymin, xmax, ymax)`` in
original-image pixels, and mapped through the same Resize + CenterCrop as the image by
:func:`fame_utils.data.transforms.map_boxes` — aspect-preserving by default, or the
paper's per-axis convention (``box_convention="per_axis"``) to reproduce its numbers.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .items import ClassificationItem
from .transforms import BoxConvention, load_image, map_boxes, resize_center_crop

__all__ = [
    "ImageNetRecord",
    "ImageNetFiles",
    "ImageNetVal",
    "find_imagenet_files",
    "read_synset_mapping",
    "read_val_records",
    "sample_per_class",
    "load_imagenet_val",
]

_IMAGE_RE = re.compile(r"^(ILSVRC2012_val_\d{8})\.(jpe?g|png)$", re.IGNORECASE)
_IMAGE_DIRS = ("ILSVRC/Data/CLS-LOC/val", "Data/CLS-LOC/val", "ILSVRC2012_img_val", "val", ".")
_XML_DIRS = (
    "ILSVRC/Annotations/CLS-LOC/val",
    "Annotations/CLS-LOC/val",
    "ILSVRC2012_bbox_val_v3/val",
    "ILSVRC2012_bbox_val_v3",
    "bbox_val",
    "val_annotations",
    "Annotations",
    "val",
    ".",
)
_CSV_NAME = "LOC_val_solution.csv"
_MAPPING_NAME = "LOC_synset_mapping.txt"


@dataclass(frozen=True)
class ImageNetRecord:
    """One annotated validation image: ``image_id`` (``ILSVRC2012_val_00000001``), its
    file ``path``, the first object's ``synset`` and class ``label``, and its ``box``
    ``(x0, y0, x1, y1)`` in original pixels."""

    image_id: str
    path: Path
    synset: str
    label: int
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class ImageNetFiles:
    """Where the pieces were found: ``images`` (id → path), the box ``annotations`` (a CSV
    file or an XML folder) and the ``mapping`` file (or ``None``)."""

    images: dict[str, Path]
    annotations: Path
    mapping: Path | None


def _index_images(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in folder.rglob("ILSVRC2012_val_*"):
        m = _IMAGE_RE.match(p.name)
        if m and p.is_file():
            out.setdefault(m.group(1), p)
    return out


def find_imagenet_files(
    root: str | Path,
    *,
    images_dir: str | Path | None = None,
    annotations: str | Path | None = None,
    synset_mapping: str | Path | None = None,
) -> ImageNetFiles:
    """Locate the validation images, the box annotations and the synset mapping.

    Args:
        root: ImageNet folder (Kaggle's ``imagenet-object-localization-challenge`` or an
            ILSVRC2012 folder).
        images_dir: the folder with the validation images (default: searched under root).
        annotations: ``LOC_val_solution.csv`` or a folder of XML files (default: searched).
        synset_mapping: ``LOC_synset_mapping.txt`` (default: ``root/LOC_synset_mapping.txt``
            if present; ``None`` found is allowed, see :func:`load_imagenet_val`).

    Raises:
        FileNotFoundError: listing every missing piece and where it was looked for.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"ImageNet root {root} is not a folder. Expected the validation images "
            f"(ILSVRC2012_val_*.JPEG), {_CSV_NAME} or per-image XML boxes, and {_MAPPING_NAME}."
        )
    problems: list[str] = []

    images: dict[str, Path] = {}
    if images_dir is not None:
        d = Path(images_dir).expanduser()
        images = _index_images(d) if d.is_dir() else {}
        if not images:
            problems.append(f"validation images ILSVRC2012_val_*.JPEG: none in {d}")
    else:
        looked = []
        for rel in _IMAGE_DIRS:
            d = root / rel
            looked.append(str(d))
            if d.is_dir():
                images = _index_images(d) if rel != "." else _index_images(root)
                if images:
                    break
        if not images:
            problems.append(
                "validation images ILSVRC2012_val_*.JPEG: none found under " + ", ".join(looked)
            )

    ann: Path | None = None
    if annotations is not None:
        a = Path(annotations).expanduser()
        if a.is_file() or (a.is_dir() and any(a.glob("ILSVRC2012_val_*.xml"))):
            ann = a
        else:
            problems.append(f"box annotations: {a} is neither a CSV file nor a folder of XML files")
    else:
        if (root / _CSV_NAME).is_file():
            ann = root / _CSV_NAME
        else:
            for rel in _XML_DIRS:
                d = root / rel
                if d.is_dir() and any(d.glob("ILSVRC2012_val_*.xml")):
                    ann = d
                    break
        if ann is None:
            problems.append(
                f"box annotations: no {root / _CSV_NAME} and no ILSVRC2012_val_*.xml in "
                + ", ".join(str(root / r) for r in _XML_DIRS)
            )

    mapping: Path | None = None
    if synset_mapping is not None:
        mapping = Path(synset_mapping).expanduser()
        if not mapping.is_file():
            problems.append(f"synset mapping file {mapping} does not exist")
    elif (root / _MAPPING_NAME).is_file():
        mapping = root / _MAPPING_NAME

    if problems:
        raise FileNotFoundError(
            f"ImageNet validation data under {root} is incomplete; missing:\n  - "
            + "\n  - ".join(problems)
        )
    return ImageNetFiles(images=images, annotations=ann, mapping=mapping)


def read_synset_mapping(
    mapping: str | Path | Sequence[str] | Mapping[str, int],
) -> dict[str, int]:
    """synset → class index from ``LOC_synset_mapping.txt`` (line i: ``"n01440764 tench,
    Tinca tinca"`` = class i), a sequence of synsets in class order, or a dict."""
    if isinstance(mapping, Mapping):
        return {str(k): int(v) for k, v in mapping.items()}
    if isinstance(mapping, (str, Path)):
        path = Path(mapping)
        if not path.is_file():
            raise FileNotFoundError(f"synset mapping file {path} does not exist")
        synsets = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            syn = line.split()[0]
            if not re.fullmatch(r"n\d{8}", syn):
                raise ValueError(f"{path}:{n}: expected a synset id like n01440764, got {syn!r}")
            synsets.append(syn)
    else:
        synsets = [str(s) for s in mapping]
    if len(set(synsets)) != len(synsets):
        raise ValueError("the synset mapping lists a synset twice")
    return {s: i for i, s in enumerate(synsets)}


def _first_objects_csv(path: Path) -> dict[str, tuple[str, tuple[float, ...], None]]:
    out = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(
            reader.fieldnames
        ):
            raise ValueError(
                f"{path}: expected columns ImageId, PredictionString, got {reader.fieldnames}"
            )
        for n, row in enumerate(reader, 2):
            tokens = row["PredictionString"].split()
            if len(tokens) < 5:
                raise ValueError(f"{path}:{n}: PredictionString needs 'synset x0 y0 x1 y1'")
            try:
                box = tuple(float(v) for v in tokens[1:5])
            except ValueError as e:
                raise ValueError(f"{path}:{n}: bad box {tokens[1:5]}") from e
            out[row["ImageId"]] = (tokens[0], box, None)
    return out


def _first_object_xml(path: Path) -> tuple[str, tuple[float, ...], tuple[int, int] | None]:
    try:
        tree = ET.parse(path)
    except ET.ParseError as e:
        raise ValueError(f"{path}: not a valid XML annotation ({e})") from e
    obj = tree.getroot().find("object")
    if obj is None:
        raise ValueError(f"{path}: no <object> element")
    name = obj.findtext("name")
    bb = obj.find("bndbox")
    if not name or bb is None:
        raise ValueError(f"{path}: the first <object> lacks <name> or <bndbox>")
    try:
        box = tuple(float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: <bndbox> needs numeric xmin, ymin, xmax, ymax") from e
    size = tree.getroot().find("size")
    hw = None
    if size is not None and size.findtext("height") and size.findtext("width"):
        hw = (int(size.findtext("height")), int(size.findtext("width")))
    return name.strip(), box, hw


def read_val_records(
    files: ImageNetFiles,
    synset_mapping: str | Path | Sequence[str] | Mapping[str, int] | None = None,
    *,
    missing_images: str = "error",
) -> list[ImageNetRecord]:
    """One :class:`ImageNetRecord` per annotated image (first object), sorted by id.

    Args:
        files: from :func:`find_imagenet_files`.
        synset_mapping: overrides ``files.mapping`` (path, sequence or dict).
        missing_images: ``"error"`` (default) raises listing annotated images without a
            file; ``"skip"`` drops them.
    """
    if files.annotations.is_file():
        first = _first_objects_csv(files.annotations)
    else:
        first = {
            p.stem: _first_object_xml(p)
            for p in sorted(files.annotations.glob("ILSVRC2012_val_*.xml"))
        }
    if not first:
        raise ValueError(f"no annotations in {files.annotations}")
    source = synset_mapping if synset_mapping is not None else files.mapping
    if source is not None:
        mapping = read_synset_mapping(source)
    else:
        synsets = sorted({s for s, _, _ in first.values()})
        if len(synsets) != 1000:
            raise FileNotFoundError(
                f"no synset -> class mapping: {_MAPPING_NAME} was not found and the annotations "
                f"cover {len(synsets)} synsets, not all 1000 (which would fix the standard "
                "sorted order). Pass synset_mapping= a LOC_synset_mapping.txt file, a list of "
                "the 1000 synsets in class order, or a dict."
            )
        mapping = {s: i for i, s in enumerate(synsets)}
    unknown = sorted({s for s, _, _ in first.values() if s not in mapping})
    if unknown:
        raise ValueError(
            f"{len(unknown)} synset(s) of the annotations are not in the mapping: {unknown[:10]}"
        )
    missing = sorted(i for i in first if i not in files.images)
    if missing and missing_images == "error":
        raise FileNotFoundError(
            f"{len(missing)} annotated image(s) have no file among the {len(files.images)} "
            f"images found: {', '.join(missing[:10])}{' …' if len(missing) > 10 else ''} "
            "(pass missing_images='skip' to drop them)"
        )
    return [
        ImageNetRecord(i, files.images[i], syn, mapping[syn], tuple(box))
        for i, (syn, box, _) in sorted(first.items())
        if i in files.images
    ]


def sample_per_class(
    records: Sequence[ImageNetRecord], per_class: int | None = 5, seed: int = 0
) -> list[ImageNetRecord]:
    """``per_class`` records of every class, drawn with ``random.Random(seed)`` from each
    class's records sorted by id (all of a class when it has fewer; ``None``: all).
    The result is ordered by (class, image id). 5 per class over the full validation set
    is the paper's 5000-image protocol."""
    by_class: dict[int, list[ImageNetRecord]] = {}
    for r in sorted(records, key=lambda r: r.image_id):
        by_class.setdefault(r.label, []).append(r)
    out = []
    rng = random.Random(seed)
    for label in sorted(by_class):
        group = by_class[label]
        if per_class is not None and len(group) > per_class:
            group = sorted(rng.sample(group, per_class), key=lambda r: r.image_id)
        out.extend(group)
    return out


class ImageNetVal(Sequence):
    """Lazily loaded validation items (:class:`~fame_utils.data.items.ClassificationItem`):
    ``image`` (3, crop, crop) in [0, 1], ``label``, ``box`` (4,) in crop pixels, ``name``
    = image id. ``identity`` names the selection and preprocessing for the runner's cache.
    """

    def __init__(
        self,
        records: Sequence[ImageNetRecord],
        *,
        resize: int = 232,
        crop: int = 224,
        box_convention: BoxConvention = "aspect",
    ):
        if box_convention not in ("aspect", "per_axis"):
            raise ValueError(
                f"box_convention must be 'aspect' or 'per_axis', got {box_convention!r}"
            )
        self.records = list(records)
        self.resize, self.crop, self.box_convention = int(resize), int(crop), box_convention
        h = hashlib.sha256(f"{self.resize}/{self.crop}/{box_convention}".encode())
        for r in self.records:
            h.update(f"{r.image_id},{r.label},{r.box}\n".encode())
        self.identity = f"imagenet-val:{len(self.records)}:{h.hexdigest()[:16]}"

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        r = self.records[i]
        img = load_image(r.path)
        hw = (img.shape[1], img.shape[2])
        box = map_boxes(torch.tensor([r.box]), hw, self.resize, self.crop, self.box_convention)
        return ClassificationItem(
            image=resize_center_crop(img, self.resize, self.crop),
            label=r.label,
            box=box[0],
            name=r.image_id,
        )

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]


def load_imagenet_val(
    root: str | Path,
    *,
    per_class: int | None = 5,
    seed: int = 0,
    max_images: int | None = None,
    resize: int = 232,
    crop: int = 224,
    box_convention: BoxConvention = "aspect",
    images_dir: str | Path | None = None,
    annotations: str | Path | None = None,
    synset_mapping: str | Path | Sequence[str] | Mapping[str, int] | None = None,
    missing_images: str = "error",
) -> ImageNetVal:
    """The paper's ImageNet protocol: ``per_class`` images per class (5 → 5000 images),
    first object's class and box, Resize(``resize``) + CenterCrop(``crop``).

    Args:
        root: local ImageNet folder (see the module docstring for the files needed).
        per_class: images per class (``None``: all annotated images).
        seed: seed of the per-class sampler.
        max_images: keep only the first ``max_images`` of the (class-ordered) sample.
        resize, crop: preprocessing (232/224 for torchvision's ResNet-50 V2 weights).
        box_convention: ``"aspect"`` (exact) or ``"per_axis"`` (the paper's code).
        images_dir, annotations, synset_mapping: explicit locations (default: searched).
        missing_images: ``"error"`` or ``"skip"`` annotated images without a file.

    Raises:
        FileNotFoundError: a clear list of what is missing.
    """
    mapping_file = synset_mapping if isinstance(synset_mapping, (str, Path)) else None
    files = find_imagenet_files(
        root, images_dir=images_dir, annotations=annotations, synset_mapping=mapping_file
    )
    records = read_val_records(
        files,
        synset_mapping if mapping_file is None else None,
        missing_images=missing_images,
    )
    chosen = sample_per_class(records, per_class, seed)
    if max_images is not None:
        chosen = chosen[:max_images]
    return ImageNetVal(chosen, resize=resize, crop=crop, box_convention=box_convention)

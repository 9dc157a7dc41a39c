"""ImageNet validation images with their first object's class and box, Resize(232) +
CenterCrop(224) (paper Sec. 4.3, Table 2), from a local copy (:func:`find_imagenet_files`).
The authors' image list loads as it is with ``protocol=``; otherwise our seeded draw of
``per_class`` images per class (:func:`sample_per_class`), comparable only statistically.
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .items import ClassificationItem, Rows
from .transforms import BoxConvention, load_crop

_IMAGE_RE = re.compile(r"^(ILSVRC2012_val_\d{8})\.(jpe?g|png)$", re.IGNORECASE)
_IMAGE_DIRS = ("ILSVRC/Data/CLS-LOC/val", "Data/CLS-LOC/val", "ILSVRC2012_img_val", "val", ".")
_XML_DIRS = (
    "ILSVRC/Annotations/CLS-LOC/val",
    "Annotations/CLS-LOC/val",
    "ILSVRC2012_bbox_val_v3/val",
    "val",
    ".",
)
_CSV_NAME = "LOC_val_solution.csv"
_MAPPING_NAME = "LOC_synset_mapping.txt"


@dataclass(frozen=True)
class ImageNetRecord:
    """One validation image (``ILSVRC2012_val_00000001``), its file, its first object's
    synset, class and ``(x0, y0, x1, y1)`` box in the file's pixels."""

    image_id: str
    path: Path
    synset: str
    label: int
    box: tuple[float, float, float, float]


def _index_images(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in folder.rglob("ILSVRC2012_val_*"):
        m = _IMAGE_RE.match(p.name)
        if m and p.is_file():
            out.setdefault(m.group(1), p)
    return out


def _has_xml(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("ILSVRC2012_val_*.xml"))


def find_imagenet_files(
    root: str | Path, annotations: str | Path | None = None
) -> tuple[dict[str, Path], Path, Path | None]:
    """``(images, annotations, mapping)``: the validation images ``ILSVRC2012_val_*.JPEG``
    (id → path, flat or per-synset folders), the box ``annotations`` (Kaggle's
    ``LOC_val_solution.csv`` or a folder of per-image XML; default: searched) and
    ``root/LOC_synset_mapping.txt`` or None; ``FileNotFoundError`` lists what is missing."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"ImageNet root {root} is not a folder. Expected the validation images "
            f"(ILSVRC2012_val_*.JPEG), {_CSV_NAME} or per-image XML boxes, and {_MAPPING_NAME}."
        )
    problems = []
    folders = [root / rel for rel in _IMAGE_DIRS]
    images = next((i for f in folders if f.is_dir() and (i := _index_images(f))), {})
    if not images:
        looked = ", ".join(map(str, folders))
        problems.append(f"validation images ILSVRC2012_val_*.JPEG: none found under {looked}")
    if annotations is not None:
        ann = Path(annotations).expanduser()
        if not (ann.is_file() or _has_xml(ann)):
            problems.append(f"box annotations: {ann} is neither a CSV file nor a folder of XML")
    elif (root / _CSV_NAME).is_file():
        ann = root / _CSV_NAME
    else:
        ann = next((root / rel for rel in _XML_DIRS if _has_xml(root / rel)), None)
        if ann is None:
            problems.append(
                f"box annotations: no {root / _CSV_NAME} and no ILSVRC2012_val_*.xml in "
                + ", ".join(str(root / r) for r in _XML_DIRS)
            )
    if problems:
        raise FileNotFoundError(
            f"ImageNet validation data under {root} is incomplete; missing:\n  - "
            + "\n  - ".join(problems)
        )
    mapping = root / _MAPPING_NAME
    return images, ann, mapping if mapping.is_file() else None


def read_synset_mapping(mapping: str | Path) -> dict[str, int]:
    """synset → class index from ``LOC_synset_mapping.txt`` (line i: ``"n01440764 tench,
    Tinca tinca"`` = class i)."""
    if not Path(mapping).is_file():
        raise FileNotFoundError(f"synset mapping file {mapping} does not exist")
    lines = Path(mapping).read_text(encoding="utf-8").splitlines()
    synsets = [line.split()[0] for line in lines if line.strip()]
    bad = [syn for syn in synsets if not re.fullmatch(r"n\d{8}", syn)]
    if bad:
        raise ValueError(f"{mapping}: expected synset ids like n01440764, got {bad[0]!r}")
    if len(set(synsets)) != len(synsets):
        raise ValueError("the synset mapping lists a synset twice")
    return {s: i for i, s in enumerate(synsets)}


def _check_box(box: tuple[float, ...], where: str) -> tuple[float, ...]:
    """A finite, non-reversed (x0, y0, x1, y1) box; ``where`` names the file and row."""
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"{where}: box {list(box)} contains NaN or infinite values")
    if box[2] < box[0] or box[3] < box[1]:
        raise ValueError(
            f"{where}: box {list(box)} is reversed; expected x0 y0 x1 y1 with x0 <= x1, y0 <= y1"
        )
    return box


def _csv_rows(path: Path, protocol: bool) -> list[tuple[str, str, tuple[float, ...]]]:
    """(image id, synset, first box) of a Kaggle-style CSV: a ``protocol``'s rows in order,
    its ``target`` column overriding the class; else each image once, by id."""
    rows, first = [], {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or ()):
            raise ValueError(
                f"{path}: expected columns ImageId, PredictionString, got {reader.fieldnames}"
            )
        for n, row in enumerate(reader, 2):
            image_id, tokens = row["ImageId"].strip(), (row["PredictionString"] or "").split()
            if len(tokens) < 5:
                raise ValueError(f"{path}:{n}: PredictionString needs 'synset x0 y0 x1 y1'")
            try:
                box = tuple(float(v) for v in tokens[1:5])
            except ValueError as e:
                raise ValueError(f"{path}:{n}: bad box {tokens[1:5]}") from e
            _check_box(box, f"{path}:{n} ({image_id})")
            target = (row.get("target") or "").strip()
            seen = first.setdefault(image_id, (n, tokens[0], box))
            if not protocol and seen[1:] != (tokens[0], box):
                raise ValueError(
                    f"{path}:{n}: {image_id} is listed again (first at line {seen[0]}) with "
                    f"another class or box ({seen[1]} {list(seen[2])} vs {tokens[0]} "
                    f"{list(box)}); keep one row per image"
                )
            rows.append((image_id, target or tokens[0], box))
    return rows if protocol else sorted({r[0]: r for r in reversed(rows)}.values())


def _first_object_xml(path: Path) -> tuple[str, tuple[float, ...]]:
    try:
        obj = ET.parse(path).getroot().find("object")
        name = obj.findtext("name").strip()
        box = tuple(float(obj.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
        raise ValueError(
            f"{path}: expected an <object> with <name> and numeric <bndbox> xmin, ymin, xmax, "
            f"ymax ({e})"
        ) from e
    return name, _check_box(box, f"{path} (first <object>)")


def _check_count(n: object, name: str) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"{name} must be a whole number >= 1 or None, got {n!r}")


def sample_per_class(
    records: Sequence[ImageNetRecord], per_class: int | None = 5, seed: int = 0
) -> list[ImageNetRecord]:
    """``per_class`` records of every class (all when fewer; ``None``: all), drawn with
    ``random.Random(seed)`` from each class's records sorted by id, ordered by (class, id):
    5 per class gives the paper's 5000 images, not the authors' list (``protocol=``)."""
    _check_count(per_class, "per_class")
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


@dataclass(eq=False)
class ImageNetVal(Rows):
    """Lazily loaded :class:`~fame_utils.data.items.ClassificationItem` s named by image id;
    ``identity`` names the selection and preprocessing for the runner's cache."""

    records: list[ImageNetRecord]
    resize: int = 232
    crop: int = 224
    box_convention: BoxConvention = "aspect"

    def __post_init__(self) -> None:
        if self.box_convention not in ("aspect", "per_axis"):
            raise ValueError(
                f"box_convention must be 'aspect' or 'per_axis', got {self.box_convention!r}"
            )
        h = hashlib.sha256(f"{self.resize}/{self.crop}/{self.box_convention}".encode())
        for r in self.records:
            h.update(f"{r.image_id},{r.label},{r.box}\n".encode())
        self.identity = f"imagenet-val:{len(self.records)}:{h.hexdigest()[:16]}"

    def __getitem__(self, i: int) -> ClassificationItem:
        r = self.records[i]
        image, box = load_crop(r.path, r.box, self.resize, self.crop, self.box_convention)
        return ClassificationItem(image=image, label=r.label, box=box, name=r.image_id)


def load_imagenet_val(
    root: str | Path,
    *,
    per_class: int | None = 5,
    seed: int = 0,
    max_images: int | None = None,
    resize: int = 232,
    crop: int = 224,
    box_convention: BoxConvention = "aspect",
    annotations: str | Path | None = None,
    synset_mapping: str | Path | None = None,
    protocol: str | Path | None = None,
) -> ImageNetVal:
    """ImageNet validation items of the image list ``protocol`` (a CSV ``ImageId,
    PredictionString[, target]``: its rows in order, duplicates kept, as the authors'
    ``imagenet.csv``) or of our draw :func:`sample_per_class` (``per_class``, ``seed``), the
    first ``max_images`` of them. ``root``, ``annotations``: :func:`find_imagenet_files`;
    ``synset_mapping``: :func:`read_synset_mapping` (default: found); ``resize``, ``crop``:
    232/224 for torchvision's ResNet-50 V2; ``box_convention``: ``"aspect"`` (exact) or
    ``"per_axis"`` (the paper's code), :func:`~fame_utils.data.transforms.resize_crop`.

    Raises:
        FileNotFoundError: a list of what is missing.
        ValueError: a bad row (reversed or NaN box, unknown synset), naming file and line.
    """
    _check_count(max_images, "max_images")
    protocol = None if protocol is None else Path(protocol).expanduser()
    if protocol is not None and not protocol.is_file():
        raise FileNotFoundError(f"ImageNet protocol list {protocol} does not exist")
    images, found, mapping_file = find_imagenet_files(root, annotations or protocol)
    if protocol is not None or found.is_file():
        rows = _csv_rows(protocol or found, protocol is not None)
    else:
        xmls = sorted(found.glob("ILSVRC2012_val_*.xml"))
        rows = [(p.stem, *_first_object_xml(p)) for p in xmls]
    if not rows:
        raise ValueError(f"no annotations in {protocol or found}")
    synsets = {syn for _, syn, _ in rows}
    source = synset_mapping if synset_mapping is not None else mapping_file
    if source is None and len(synsets) != 1000:
        raise FileNotFoundError(
            f"no synset -> class mapping: {_MAPPING_NAME} was not found and the annotations "
            f"cover {len(synsets)} synsets, not all 1000 (which would fix the standard sorted "
            "order). Pass synset_mapping= a LOC_synset_mapping.txt file."
        )
    if source is None:
        mapping = {s: i for i, s in enumerate(sorted(synsets))}
    else:
        mapping = read_synset_mapping(source)
    unknown = sorted(synsets - set(mapping))
    if unknown:
        raise ValueError(
            f"{len(unknown)} synset(s) of the annotations are not in the mapping: {unknown[:10]}"
        )
    missing = sorted({i for i, _, _ in rows if i not in images})
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} annotated image(s) have no file among the {len(images)} "
            f"images found: {', '.join(missing[:10])}{' …' if len(missing) > 10 else ''} "
            "(copy them from the ImageNet validation set)"
        )
    chosen = [ImageNetRecord(i, images[i], syn, mapping[syn], tuple(box)) for i, syn, box in rows]
    if protocol is None:
        chosen = sample_per_class(chosen, per_class, seed)
    if max_images is not None:
        chosen = chosen[:max_images]
    return ImageNetVal(chosen, int(resize), int(crop), box_convention)

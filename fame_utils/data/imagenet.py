"""ImageNet validation images with their first object's class and box, Resize(232) +
CenterCrop(224) (paper Sec. 4.3, Table 2): the authors' list (``protocol=``) or our draw."""

from __future__ import annotations

import csv
import hashlib
import math
import random
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .items import ClassificationItem, Rows
from .transforms import BoxConvention, load_crop

_CSV_NAME = "LOC_val_solution.csv"
_MAPPING_NAME = "LOC_synset_mapping.txt"
_XML_GLOB = "ILSVRC2012_val_*.xml"


@dataclass(frozen=True)
class ImageNetRecord:
    """One validation image, its file, its first object's synset, class and xyxy file box."""

    image_id: str
    path: Path
    synset: str
    label: int
    box: tuple[float, float, float, float]


def find_imagenet_files(
    root: str | Path, annotations: str | Path | None = None
) -> tuple[dict[str, Path], Path, Path | None]:
    """``(images, annotations, mapping)`` under ``root`` (searched recursively): image id →
    ``ILSVRC2012_val_*.JPEG``, ``root/LOC_val_solution.csv`` or the per-image XML folder (unless
    given), ``root/LOC_synset_mapping.txt`` or None; ``FileNotFoundError`` lists what is missing."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"ImageNet root {root} is not a folder. Expected the validation images "
            f"(ILSVRC2012_val_*.JPEG), {_CSV_NAME} or per-image XML boxes, and {_MAPPING_NAME}."
        )
    images: dict[str, Path] = {}
    for p in sorted(root.rglob("ILSVRC2012_val_*")):
        m = re.fullmatch(r"(ILSVRC2012_val_\d{8})\.(jpe?g|png)", p.name, re.IGNORECASE)
        if m and p.is_file():
            images.setdefault(m.group(1), p)
    problems = [] if images else [f"validation images ILSVRC2012_val_*.JPEG under {root}"]
    if annotations is not None:
        ann = Path(annotations).expanduser()
        if not (ann.is_file() or any(ann.glob(_XML_GLOB))):
            problems.append(f"box annotations: {ann} is neither a CSV file nor a folder of XML")
    elif (root / _CSV_NAME).is_file():
        ann = root / _CSV_NAME
    else:
        ann = next((p.parent for p in sorted(root.rglob(_XML_GLOB))), None)
        if ann is None:
            problems.append(f"box annotations: {root / _CSV_NAME} or ILSVRC2012_val_*.xml")
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
    if bad or len(set(synsets)) != len(synsets):
        raise ValueError(f"{mapping}: expected distinct synset ids like n01440764, got {bad[:1]}")
    return {s: i for i, s in enumerate(synsets)}


def _raw_rows(path: Path):
    """(where, image id, class synset, box strings) of each image of a Kaggle-style CSV (its
    ``target`` column overriding the class) or of a folder of per-image XML (first object)."""
    if path.is_dir():
        for p in sorted(path.glob(_XML_GLOB)):
            try:
                obj = ET.parse(p).getroot().find("object")
                coords = [obj.find("bndbox").findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
                yield f"{p} (first <object>)", p.stem, obj.findtext("name").strip(), coords
            except (ET.ParseError, AttributeError) as e:
                raise ValueError(
                    f"{p}: expected an <object> with <name> and <bndbox> xmin, ymin, xmax, "
                    f"ymax ({e})"
                ) from e
        return
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or ()):
            raise ValueError(
                f"{path}: expected columns ImageId, PredictionString, got {reader.fieldnames}"
            )
        for n, row in enumerate(reader, 2):
            tokens = (row["PredictionString"] or "").split()
            if len(tokens) < 5:
                raise ValueError(f"{path}:{n}: PredictionString needs 'synset x0 y0 x1 y1'")
            target = (row.get("target") or "").strip() or tokens[0]
            yield f"{path}:{n}", row["ImageId"].strip(), target, tokens[1:5]


def _read_rows(path: Path, protocol: bool) -> list[tuple[str, str, tuple[float, ...]]]:
    """(image id, synset, first box) of :func:`_raw_rows`, boxes checked: a ``protocol``'s
    rows in order; else each image once, by id."""
    rows, first = [], {}
    for where, image_id, synset, coords in _raw_rows(path):
        try:
            box = tuple(float(v) for v in coords)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: bad box {coords}") from e
        if not all(math.isfinite(v) for v in box):
            raise ValueError(
                f"{where} ({image_id}): box {list(box)} contains NaN or infinite values"
            )
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(
                f"{where} ({image_id}): box {list(box)} is reversed; expected x0 y0 x1 y1 with "
                "x0 <= x1, y0 <= y1"
            )
        seen = first.setdefault(image_id, (where, synset, box))
        if not protocol and seen[1:] != (synset, box):
            raise ValueError(
                f"{where}: {image_id} is listed again (first at {seen[0]}) with another class or "
                f"box ({seen[1]} {list(seen[2])} vs {synset} {list(box)}); keep one row per image"
            )
        rows.append((image_id, synset, box))
    return rows if protocol else sorted({r[0]: r for r in reversed(rows)}.values())


def _check_count(n: object, name: str) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"{name} must be a whole number >= 1 or None, got {n!r}")


@dataclass(eq=False)
class ImageNetVal(Rows):
    """Lazily loaded ``ClassificationItem`` s named by image id; ``identity``: the cache key."""

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
    """The first ``max_images`` ImageNet validation items of the list ``protocol`` (a CSV
    ``ImageId, PredictionString[, target]``: rows in order, duplicates kept) or of our seeded
    draw of ``per_class`` per class (5: the paper's 5000 images, not the authors' list).
    ``root``, ``annotations``: :func:`find_imagenet_files`; ``box_convention``:
    :func:`~fame_utils.data.transforms.resize_crop`. ``FileNotFoundError`` lists what is
    missing; ``ValueError`` names the file and line of a bad row."""
    _check_count(max_images, "max_images")
    protocol = None if protocol is None else Path(protocol).expanduser()
    if protocol is not None and not protocol.is_file():
        raise FileNotFoundError(f"ImageNet protocol list {protocol} does not exist")
    images, found, mapping_file = find_imagenet_files(root, annotations or protocol)
    rows = _read_rows(protocol or found, protocol is not None)
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
    if protocol is None:  # per_class of each class (all when fewer), drawn by id, in (class, id)
        _check_count(per_class, "per_class")
        by_class: dict[int, list[ImageNetRecord]] = {}
        for r in sorted(chosen, key=lambda r: r.image_id):
            by_class.setdefault(r.label, []).append(r)
        rng, chosen = random.Random(seed), []
        for label in sorted(by_class):
            group = by_class[label]
            if per_class is not None and len(group) > per_class:
                group = sorted(rng.sample(group, per_class), key=lambda r: r.image_id)
            chosen.extend(group)
    if max_images is not None:
        chosen = chosen[:max_images]
    return ImageNetVal(chosen, int(resize), int(crop), box_convention)

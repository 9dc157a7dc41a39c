"""ImageNet validation files: finding them on disk and reading boxes, classes and image lists.

:func:`find_imagenet_files` locates the pieces (:class:`ImageNetFiles`);
:func:`read_val_records` (every annotated image) and :func:`read_protocol_records` (a fixed
image list, duplicates kept) read them into :class:`ImageNetRecord`\\ s: the first object's
synset, class index and box ``(x0, y0, x1, y1)`` in original-image pixels (plain Python
values); :func:`read_synset_mapping` reads the synset → class index mapping. A bad row
raises naming the file and line; missing pieces raise listing every one.
:mod:`fame_utils.data.imagenet` turns the records into the paper's dataset.

ImageNet cannot be downloaded by this package; these functions read a local copy (the
folder given to :func:`fame_utils.data.imagenet.load_imagenet_val`). Files needed (any one
layout):

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
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "ImageNetRecord",
    "ImageNetFiles",
    "find_imagenet_files",
    "read_synset_mapping",
    "read_val_records",
    "read_protocol_records",
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


def _check_box(box: tuple[float, ...], where: str) -> tuple[float, ...]:
    """A finite, non-reversed (x0, y0, x1, y1) box; ``where`` names the file and row."""
    if not bool(torch.isfinite(torch.tensor(box, dtype=torch.float64)).all()):
        raise ValueError(f"{where}: box {list(box)} contains NaN or infinite values")
    x0, y0, x1, y1 = box
    if x1 < x0 or y1 < y0:
        raise ValueError(
            f"{where}: box {list(box)} is reversed; expected x0 y0 x1 y1 with x0 <= x1, y0 <= y1"
        )
    return box


def _csv_rows(path: Path) -> list[tuple[int, str, str, tuple[float, ...], str | None]]:
    """Rows of a Kaggle-style CSV in file order: (line, image id, first object's synset,
    its box, the ``target`` column or None)."""
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(
            reader.fieldnames
        ):
            raise ValueError(
                f"{path}: expected columns ImageId, PredictionString, got {reader.fieldnames}"
            )
        for n, row in enumerate(reader, 2):
            tokens = (row["PredictionString"] or "").split()
            if len(tokens) < 5:
                raise ValueError(f"{path}:{n}: PredictionString needs 'synset x0 y0 x1 y1'")
            try:
                box = tuple(float(v) for v in tokens[1:5])
            except ValueError as e:
                raise ValueError(f"{path}:{n}: bad box {tokens[1:5]}") from e
            _check_box(box, f"{path}:{n} ({row['ImageId']})")
            target = (row.get("target") or "").strip() or None
            rows.append((n, row["ImageId"].strip(), tokens[0], box, target))
    return rows


def _first_objects_csv(path: Path) -> dict[str, tuple[str, tuple[float, ...], None]]:
    """The first object of every image id; an id listed twice with another class or box
    is refused (naming both lines) rather than resolved by keeping one row."""
    first: dict[str, tuple[str, tuple[float, ...], None]] = {}
    lines: dict[str, int] = {}
    for n, image_id, syn, box, _ in _csv_rows(path):
        if image_id in first and first[image_id][:2] != (syn, box):
            raise ValueError(
                f"{path}:{n}: {image_id} is listed again (first at line {lines[image_id]}) "
                f"with another class or box ({first[image_id][0]} {list(first[image_id][1])} "
                f"vs {syn} {list(box)}); keep one row per image"
            )
        first.setdefault(image_id, (syn, box, None))
        lines.setdefault(image_id, n)
    return first


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
    _check_box(box, f"{path} (first <object>)")
    size = tree.getroot().find("size")
    hw = None
    if size is not None and size.findtext("height") and size.findtext("width"):
        hw = (int(size.findtext("height")), int(size.findtext("width")))
    return name.strip(), box, hw


def _class_mapping(
    synsets: set[str], source: str | Path | Sequence[str] | Mapping[str, int] | None
) -> dict[str, int]:
    """synset → class index from ``source``, or the standard sorted order when the
    annotations cover all 1000 synsets; every synset in ``synsets`` must be mapped."""
    if source is not None:
        mapping = read_synset_mapping(source)
    else:
        if len(synsets) != 1000:
            raise FileNotFoundError(
                f"no synset -> class mapping: {_MAPPING_NAME} was not found and the annotations "
                f"cover {len(synsets)} synsets, not all 1000 (which would fix the standard "
                "sorted order). Pass synset_mapping= a LOC_synset_mapping.txt file, a list of "
                "the 1000 synsets in class order, or a dict."
            )
        mapping = {s: i for i, s in enumerate(sorted(synsets))}
    unknown = sorted(s for s in synsets if s not in mapping)
    if unknown:
        raise ValueError(
            f"{len(unknown)} synset(s) of the annotations are not in the mapping: {unknown[:10]}"
        )
    return mapping


def _check_missing(image_ids: Sequence[str], files: ImageNetFiles, missing_images: str) -> None:
    if missing_images not in ("error", "skip"):
        raise ValueError(f"missing_images must be 'error' or 'skip', got {missing_images!r}")
    missing = sorted({i for i in image_ids if i not in files.images})
    if missing and missing_images == "error":
        raise FileNotFoundError(
            f"{len(missing)} annotated image(s) have no file among the {len(files.images)} "
            f"images found: {', '.join(missing[:10])}{' …' if len(missing) > 10 else ''} "
            "(pass missing_images='skip' to drop them)"
        )


def read_protocol_records(
    protocol: str | Path,
    files: ImageNetFiles,
    synset_mapping: str | Path | Sequence[str] | Mapping[str, int] | None = None,
    *,
    missing_images: str = "error",
) -> list[ImageNetRecord]:
    """The records of a fixed image list, in its order, **duplicates kept**.

    ``protocol`` is a CSV with the columns ``ImageId, PredictionString`` and optionally
    ``target`` (the authors' ``imagenet.csv``: 5000 rows drawn with replacement, so some
    images appear twice and count twice, as in the published numbers). The box is the
    first object of ``PredictionString``; the class is ``target`` when given, else that
    object's synset. A bad row raises naming the file and line.
    """
    path = Path(protocol).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ImageNet protocol list {path} does not exist")
    rows = _csv_rows(path)
    if not rows:
        raise ValueError(f"ImageNet protocol list {path} has no rows")
    for n, image_id, _, _, target in rows:
        if target is not None and not re.fullmatch(r"n\d{8}", target):
            raise ValueError(f"{path}:{n} ({image_id}): target {target!r} is not a synset id")
    labels = {(t or syn) for _, _, syn, _, t in rows}
    mapping = _class_mapping(
        labels, synset_mapping if synset_mapping is not None else files.mapping
    )
    _check_missing([r[1] for r in rows], files, missing_images)
    return [
        ImageNetRecord(image_id, files.images[image_id], t or syn, mapping[t or syn], box)
        for _, image_id, syn, box, t in rows
        if image_id in files.images
    ]


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
    mapping = _class_mapping(
        {s for s, _, _ in first.values()},
        synset_mapping if synset_mapping is not None else files.mapping,
    )
    _check_missing(list(first), files, missing_images)
    return [
        ImageNetRecord(i, files.images[i], syn, mapping[syn], tuple(box))
        for i, (syn, box, _) in sorted(first.items())
        if i in files.images
    ]

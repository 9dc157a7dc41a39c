#!/usr/bin/env python3
"""Build ``data/objects/composites/``: synthetic small-object images with exact boxes.

The bundled photos' boxes cover 69 % of the image on average, so IoU there rewards
diffuse maps (a constant map scores IoU = the box's share; issue 23). Each composite
pastes the box crop of one bundled labelled photo, scaled down to 5-18 % of the
canvas, onto another bundled photo used as background (resized to cover a
320 × 320 canvas and centre-cropped). The pasted rectangle is the box, exactly, in
integer pixels; it lies inside the central 280 × 280 pixels, so it survives
Resize(256) + CenterCrop(224). The label is the pasted object's class. Everything
is drawn from ``random.Random(SEED)``: rerunning rewrites the same images
(``--check`` compares decoded pixels with the stored ones; JPEG bytes may differ
between Pillow versions).

Usage::

    python scripts/make_object_composites.py          # write data/objects/composites/
    python scripts/make_object_composites.py --check  # rebuild in memory, compare
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "data" / "objects"
OUT = SRC / "composites"
SEED = 23
SIDE = 320
MARGIN = 20  # Resize(256) + CenterCrop(224) of a 320 px square keeps 20..300
SHARES = (0.12, 0.24)  # pasted box area / canvas area
OBJECTS = (
    "coffee",
    "chelsea",
    "motorcycle_left",
    "bus",
    "eagle",
    "squirrel_cls",
    "orange",
    "chicky_512",
    "monarch",
    "baboon",
    "china",
    "plant",
)
HEADER = ("file", "class_index", "class_name", "x0", "y0", "x1", "y1", "box_source")


def _rows() -> dict[str, dict[str, str]]:
    with (SRC / "annotations.csv").open(newline="", encoding="utf-8") as fh:
        return {Path(r["file"]).stem: r for r in csv.DictReader(fh)}


def _open(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


def _cover(img: Image.Image, side: int) -> Image.Image:
    """Resize the shorter side to ``side`` and centre-crop a square."""
    w, h = img.size
    s = side / min(w, h)
    img = img.resize((max(side, round(w * s)), max(side, round(h * s))), Image.LANCZOS)
    w, h = img.size
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def build() -> list[tuple[str, Image.Image, list[str]]]:
    """``(file, image, csv row)`` of every composite, deterministically from ``SEED``."""
    rng = random.Random(SEED)
    rows = _rows()
    names = sorted(rows)
    out = []
    for obj in OBJECTS:
        r = rows[obj]
        background = rng.choice([n for n in names if n != obj])
        canvas = _cover(_open(SRC / rows[background]["file"]), SIDE)
        box = [round(float(r[k])) for k in ("x0", "y0", "x1", "y1")]
        crop = _open(SRC / r["file"]).crop(tuple(box))
        cw, ch = crop.size
        share = rng.uniform(*SHARES)
        scale = min((share * SIDE * SIDE / (cw * ch)) ** 0.5, 0.7 * SIDE / max(cw, ch))
        w, h = max(8, round(cw * scale)), max(8, round(ch * scale))
        x0 = rng.randint(MARGIN, SIDE - MARGIN - w)
        y0 = rng.randint(MARGIN, SIDE - MARGIN - h)
        canvas.paste(crop.resize((w, h), Image.LANCZOS), (x0, y0))
        file = f"{obj}_on_{background}.jpg"
        source = f"synthetic composite: {r['file']} box on {rows[background]['file']}"
        row = [file, r["class_index"], r["class_name"], x0, y0, x0 + w, y0 + h, source]
        out.append((file, canvas, [str(v) for v in row]))
    return out


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare with the stored composites")
    args = p.parse_args(argv)
    made = build()
    if args.check:
        with (OUT / "annotations.csv").open(newline="", encoding="utf-8") as fh:
            stored = [list(r) for r in csv.reader(fh)][1:]
        bad = [] if stored == [row for _, _, row in made] else ["annotations.csv"]
        for file, img, _ in made:
            new = np.asarray(Image.open(io.BytesIO(_jpeg(img))), dtype=np.int16)
            old = np.asarray(Image.open(OUT / file), dtype=np.int16)
            if new.shape != old.shape or np.abs(new - old).max() > 2:
                bad.append(file)
        print("differ:", ", ".join(bad) if bad else "none")
        return 1 if bad else 0
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "annotations.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        for file, img, row in made:
            (OUT / file).write_bytes(_jpeg(img))
            writer.writerow(row)
    print(f"wrote {len(made)} composites to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

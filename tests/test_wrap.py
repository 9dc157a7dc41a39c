"""fame_utils.wrap: any network that expects normalised input, in three lines."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam
import torch
import torchvision
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import fame_utils as fu
from fame_utils.postprocess import gaussian_blur, to_gray

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def _hand_fame(net, x, classes, iterations, step, kernel, sigma):
    """FAME written out in the network's normalised space (paper Eq. 3-4): z = (x − m)/s,
    z̄ ← z̄ − η ∇/max|∇| per sample, map = blur(|gray(z̄) − gray(z)|) / max."""
    m, s = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    z = (x - m) / s
    zbar = z.clone()
    for _ in range(iterations):
        zbar.requires_grad_(True)
        loss = net(zbar).gather(1, classes[:, None]).sum()
        (g,) = torch.autograd.grad(loss, zbar)
        zbar = (zbar - step * g / g.abs().amax(dim=(1, 2, 3), keepdim=True)).detach()
    delta = (to_gray(zbar) - to_gray(z)).abs()
    blurred = gaussian_blur(delta, kernel, sigma)
    return blurred / blurred.flatten(1).amax(1).view(-1, 1, 1)


def test_wrap_gives_the_papers_normalised_space_fame(resnet):
    model = fu.wrap(resnet, MEAN, STD)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    classes = torch.tensor([3, 7])
    cfg = fu.FameConfig(iterations=3, kernel_size=9, sigma=2.0, progress=False)
    got = fu.fame(model, x, fu.ClassLogit(classes), cfg)
    want = _hand_fame(resnet, x, classes, 3, cfg.step_size, 9, 2.0)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)  # float32 rounding of x + s·δ
    # the same network stepped in [0, 1] pixels is a different map (issue 17)
    pixel = fu.fame(model, x, fu.ClassLogit(classes), cfg.replace(step_space="pixel"))
    assert (pixel - got).abs().max() > 1e-2
    assert model.input_normalization == (MEAN, STD)


def test_cams_find_the_last_block_of_a_torchvision_resnet(resnet):
    model = fu.wrap(resnet, MEAN, STD)
    assert model.target_layer is resnet.layer4[-1]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    (cam,) = fu.make_methods(["gradcam"], "classification")
    got = cam(model, x, fu.ClassLogit([1, 4])).positive
    # oracle: pytorch-grad-cam on the bare network fed normalised tensors
    xn = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with pytorch_grad_cam.GradCAM(model=resnet, target_layers=[resnet.layer4[-1]]) as ref:
        want = ref(input_tensor=xn, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(4)])
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_an_unknown_architecture_says_which_argument_to_pass():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    net(torch.zeros(1, 3, 8, 8))
    model = fu.wrap(net, 0.5, 0.5, input_size=8)
    assert model.target_layer is None
    (cam,) = fu.make_methods(["gradcam"], "classification")
    with pytest.raises(ValueError, match="pass target_layer=<module or dotted name>"):
        cam(model, torch.rand(1, 3, 8, 8), fu.ClassLogit(0))
    (named,) = fu.make_methods(["gradcam"], "classification", target_layer="net.0")
    assert named(model, torch.rand(1, 3, 8, 8), fu.ClassLogit(0)).positive.shape == (1, 8, 8)
    assert fu.wrap(net, 0.5, 0.5, target_layer="0").target_layer is net[0]


def test_wrap_reads_a_vision_transformers_layout():
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(32, 8, 2, 2, 16, 32, num_classes=3).eval()
    model = fu.wrap(net, 0.5, 0.25, input_size=224)  # a ViT's input size is its image_size
    assert (model.input_size, model.patch_size, model.token_grid) == (32, 8, (4, 4))
    assert list(model.stages) == ["block1", "block2"]
    assert model.stages["block2"] is net.encoder.layers[1]
    assert model.target_layer is net.encoder.layers[1].ln_1
    assert isinstance(model, fu.NormalizedModel) and model.name == "visiontransformer"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - 0.5) / 0.25), atol=0, rtol=0)

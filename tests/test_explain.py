"""FAME under the shared method convention: Fame(config) runs exactly run_fame(config)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fame_utils import (
    ClassLogit,
    CosineSimilarity,
    Dissimilarity,
    Fame,
    FameConfig,
    Objective,
    run_fame,
    wrap,
)

CFG = FameConfig(iterations=4, kernel_size=5, sigma=1.0, progress=False)
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def _embedder():
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
    )
    return wrap(net, MEAN, STD, input_size=16)  # normalised space != pixel space


@pytest.mark.parametrize("space", ["normalized", "pixel"])
def test_classification_equals_the_core_call_in_both_step_spaces(tiny_cnn, space):
    model = wrap(tiny_cnn, MEAN, STD, input_size=16)
    x = torch.rand(3, 3, 16, 16)
    cfg = CFG.replace(step_space=space)
    att = Fame(cfg)(model, x, ClassLogit([0, 1, 2]))
    assert att.negative is None
    torch.testing.assert_close(att.positive, run_fame(model, x, ClassLogit([0, 1, 2]), cfg).maps())


def test_the_step_space_changes_the_maps(tiny_cnn):
    model = wrap(tiny_cnn, MEAN, STD, input_size=16)
    x = torch.rand(2, 3, 16, 16)
    a, b = (
        Fame(CFG.replace(step_space=s))(model, x, ClassLogit([0, 1])).positive
        for s in ("normalized", "pixel")
    )
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("space", ["normalized", "pixel"])
def test_verification_equals_two_core_calls_in_both_step_spaces(space):
    net = _embedder()
    g, p = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    refs = net(g).detach()
    cfg = FameConfig.paper("verification", iterations=4, kernel_size=5, sigma=1.0, progress=False)
    cfg = cfg.replace(step_space=space, early_stop=None, deterministic=True)
    att = Fame(cfg)(net, p, CosineSimilarity(refs))
    pos = run_fame(net, p, CosineSimilarity(refs), cfg).maps()
    neg = run_fame(net, p, Dissimilarity(refs), cfg).maps()
    torch.testing.assert_close(att.positive, pos, atol=1e-6, rtol=0)
    torch.testing.assert_close(att.negative, neg, atol=1e-6, rtol=0)


class _AbsLogit(Objective):
    """|z_o| written out: the oracle of ``absolute_logit=True``."""

    def __init__(self, classes: torch.Tensor):
        self.classes = classes

    def subset(self, index):
        return _AbsLogit(self.classes[index])

    def __call__(self, model, inputs):
        return model(inputs).gather(1, self.classes[:, None]).squeeze(1).abs()


def test_absolute_logit_is_the_reference_objective(tiny_cnn):
    x = torch.rand(2, 3, 16, 16)
    a = run_fame(tiny_cnn, x, ClassLogit([0, 1]), CFG.replace(absolute_logit=True))
    b = run_fame(tiny_cnn, x, _AbsLogit(torch.tensor([0, 1])), CFG)
    assert torch.equal(a.delta, b.delta)
    with pytest.raises(ValueError, match="absolute_logit=True applies to ClassLogit"):
        run_fame(tiny_cnn, x, Dissimilarity(torch.rand(2, 4)), CFG.replace(absolute_logit=True))


def test_paper_configs_per_task():
    assert FameConfig.paper() == FameConfig()
    ver = FameConfig.paper("verification")
    assert (ver.step_space, ver.early_stop, ver.normalization) == ("pixel", 0.01, "max")
    assert FameConfig().early_stop is None  # no hidden "auto"
    assert FameConfig.paper("cells").step_space == "normalized"


def test_identical_pair_gives_a_reported_empty_negative_map():
    # L₋ = 1 − s = 0 < ε for a probe compared with its own embedding: e₋ never moves.
    net = _embedder()
    p = torch.rand(1, 3, 16, 16)
    cfg = FameConfig.paper("verification", iterations=4, progress=False)
    with pytest.warns(UserWarning, match=r"empty .* samples \[1\]"):
        att = Fame(cfg)(net, p, CosineSimilarity(net(p).detach()))
    assert att.negative.abs().sum() == 0 and att.positive.max() == 1


def test_target_errors(tiny_cnn):
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="3 reference embeddings for 2 images"):
        Fame(CFG)(tiny_cnn, x, CosineSimilarity(torch.rand(3, 5)))
    with pytest.raises(TypeError, match=r"ClassLogit\(classes\) or"):
        Fame(CFG)(tiny_cnn, x, [0, 1])


def test_early_stop_none_never_stops_and_the_verification_paper_config_stops_at_001():
    # a near-identical pair has 0 < L₋ = 1 − s < 0.01 at step 0: with ε = 0.01 e₋ stays
    # empty; with early_stop=None it keeps stepping
    net = _embedder()
    g = torch.Generator().manual_seed(3)
    p = torch.rand(1, 3, 16, 16, generator=g)
    q = (p + 0.02 * torch.rand(1, 3, 16, 16, generator=g)).clamp(0, 1)
    ref = CosineSimilarity(net(q).detach())
    s = torch.nn.functional.cosine_similarity(net(p), ref.references).item()
    assert 0.99 < s < 1.0
    paper = FameConfig.paper("verification", iterations=4, progress=False)
    with pytest.warns(UserWarning, match="empty"):
        stopped = Fame(paper)(net, p, ref)
    assert stopped.negative.abs().sum() == 0
    never = Fame(paper.replace(early_stop=None))(net, p, ref)
    assert never.negative.max() == 1

"""FAME under the shared method convention (explain.Fame)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fame_utils import ClassTarget, Fame, FameConfig, SimilarityTarget, run_fame
from fame_utils.objectives import ClassLogit, CosineSimilarity, Dissimilarity

CFG = FameConfig(iterations=4, kernel_size=5, sigma=1.0, progress=False)


def test_classification_equals_the_core_call(tiny_cnn):
    x = torch.rand(3, 3, 16, 16)
    att = Fame(CFG)(tiny_cnn, x, ClassTarget([0, 1, 2]))
    assert att.negative is None
    torch.testing.assert_close(
        att.positive, run_fame(tiny_cnn, x, ClassLogit([0, 1, 2]), CFG).maps()
    )


def _embedder():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
    ).eval()


def test_verification_runs_both_sides_in_one_batch_like_two_separate_runs():
    net = _embedder()
    g, p = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    refs = net(g).detach()
    cfg = CFG.replace(early_stop=None, step_space="pixel")
    att = Fame(cfg)(net, p, SimilarityTarget(refs))
    pos = run_fame(net, p, CosineSimilarity(refs), cfg).maps()
    neg = run_fame(net, p, Dissimilarity(refs), cfg).maps()
    torch.testing.assert_close(att.positive, pos, atol=1e-5, rtol=0)
    torch.testing.assert_close(att.negative, neg, atol=1e-5, rtol=0)


def test_verification_defaults_follow_the_paper():
    cfg = Fame(CFG).verification_config()
    assert cfg.early_stop == 0.01 and cfg.step_space == "pixel"


def test_identical_pair_gives_a_reported_empty_negative_map():
    # L₋ = 1 − s = 0 < ε for a probe compared with its own embedding: e₋ never moves.
    net = _embedder()
    p = torch.rand(1, 3, 16, 16)
    with pytest.warns(UserWarning, match=r"empty .* samples \[1\]"):
        att = Fame(CFG)(net, p, SimilarityTarget(net(p).detach()))
    assert att.negative.abs().sum() == 0 and att.positive.max() == 1


def test_target_errors(tiny_cnn):
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="3 references for 2 images"):
        Fame(CFG)(tiny_cnn, x, SimilarityTarget(torch.rand(3, 5)))
    with pytest.raises(TypeError, match="ClassTarget or SimilarityTarget"):
        Fame(CFG)(tiny_cnn, x, [0, 1])


def test_verification_early_stop_none_is_honoured_and_the_default_stays_001():
    # issue 10: FameConfig(early_stop=None) used to stop faces at 0.01 anyway
    assert Fame(CFG).verification_config().early_stop == 0.01  # nothing said
    assert Fame(CFG.replace(early_stop=None)).verification_config().early_stop is None
    assert Fame(CFG.replace(early_stop=0.2)).verification_config().early_stop == 0.2
    # behaviour: a near-identical pair has 0 < L₋ = 1 − s < 0.01 at step 0, so with the
    # default e₋ stays empty; with early_stop=None it keeps stepping
    net = _embedder()
    g = torch.Generator().manual_seed(3)
    p = torch.rand(1, 3, 16, 16, generator=g)
    q = (p + 0.02 * torch.rand(1, 3, 16, 16, generator=g)).clamp(0, 1)
    ref = SimilarityTarget(net(q).detach())
    s = torch.nn.functional.cosine_similarity(net(p), ref.references).item()
    assert 0.99 < s < 1.0
    with pytest.warns(UserWarning, match="empty"):
        default = Fame(CFG)(net, p, ref)
    assert default.negative.abs().sum() == 0
    never = Fame(CFG.replace(early_stop=None))(net, p, ref)
    assert never.negative.max() == 1
    # classification and run_fame treat the default "auto" as "never stop"
    assert FameConfig().early_stop == "auto"

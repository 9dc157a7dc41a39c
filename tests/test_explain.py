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


def test_regray_equals_a_run_in_the_other_gray_order(tiny_cnn):
    x = torch.rand(2, 3, 16, 16)
    rgb = run_fame(tiny_cnn, x, ClassLogit([0, 1]), CFG, keep_moved=True)
    bgr = run_fame(tiny_cnn, x, ClassLogit([0, 1]), CFG.replace(gray_order="bgr"))
    assert rgb.moved.shape == (2, 3, 16, 16) and bgr.moved is None  # kept only when asked
    assert not torch.equal(rgb.delta, bgr.delta)  # the order matters on this input
    again = rgb.regray("bgr")
    assert torch.equal(again.delta, bgr.delta) and again.config == bgr.config
    assert torch.equal(again.maps(), bgr.maps())
    with pytest.raises(ValueError, match="keep_moved=True"):
        bgr.regray("rgb")


@pytest.mark.filterwarnings("ignore:FAME produced empty")  # a dead-ReLU e₋ of this tiny net
def test_face_recipes_share_one_optimisation_with_bit_identical_maps():
    # FAME (paper) and FAME (reference) on faces take the same steps and differ only in
    # the gray order and normalisation: one run per batch serves both.
    from fame_utils.methods import make_methods

    net = _embedder()
    g, p = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    refs = net(g).detach()
    cfg = CFG.replace(early_stop=None)
    pair = make_methods(["FAME"], "verification", recipes=["paper", "reference"], fame_config=cfg)
    shared = pair[0].shared
    assert shared is not None and pair[1].shared is shared
    both = [m(net, p, SimilarityTarget(refs)) for m in pair]
    alone = [Fame(cfg, recipe=r)(net, p, SimilarityTarget(refs)) for r in ("paper", "reference")]
    for a, b in zip(both, alone):
        assert torch.equal(a.positive, b.positive) and torch.equal(a.negative, b.negative)
    assert not torch.equal(both[0].positive, both[1].positive)  # the recipes still differ
    assert (shared.runs, shared.reused, shared.bytes) == (1, 1, 0)  # taken, then dropped
    # another batch is another run: matched by content, not by position
    pair[1](net, p.flip(0), SimilarityTarget(refs.flip(0)))
    assert (shared.runs, shared.reused) == (2, 1) and shared.bytes > 0


def test_runs_that_differ_before_post_processing_are_not_shared(tiny_cnn):
    from fame_utils.explain import SharedRuns
    from fame_utils.methods import make_methods
    from fame_utils.recipes import PAPER

    # classification: the reference recipe descends |z_o| with ε = 1e-3, other steps
    cls = make_methods(["FAME"], "classification", recipes=["paper", "reference"])
    assert cls[0].shared is None and cls[1].shared is None
    # a recipe that changes only the normalisation shares, and the maps still match
    minmax = PAPER.replace(name="minmax", normalization="minmax")
    pair = make_methods(["FAME"], "classification", recipes=[PAPER, minmax], fame_config=CFG)
    assert pair[0].shared is pair[1].shared is not None
    x = torch.rand(2, 3, 16, 16)
    got = [m(tiny_cnn, x, ClassTarget([0, 1])).positive for m in pair]
    want = [Fame(CFG, recipe=r)(tiny_cnn, x, ClassTarget([0, 1])).positive for r in (PAPER, minmax)]
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    # nothing is kept beyond max_bytes: each sibling optimises again, same maps
    for m in pair:
        m.shared = SharedRuns(2, max_bytes=0)
    again = [m(tiny_cnn, x, ClassTarget([0, 1])).positive for m in pair]
    assert all(torch.equal(a, b) for a, b in zip(again, want))
    assert pair[0].shared.reused == 0
    with pytest.raises(ValueError, match="at least 2"):
        SharedRuns(1)

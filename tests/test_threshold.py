"""EER threshold on hand-made score lists (accept when s >= θ; ties -> largest θ)."""

import numpy as np
import pytest
import torch

from fame_utils.metrics.face import eer, eer_threshold


def test_eer_unique_minimum():
    # genuine 0.9 0.8 0.7 0.4 | impostor 0.6 0.5 0.3 0.2
    #   θ:    0.2  0.3  0.4  0.5  0.6  0.7  0.8  0.9
    #  FAR:   4/4  3/4  2/4  2/4  1/4   0    0    0
    #  FRR:    0    0    0   1/4  1/4  1/4  2/4  3/4
    # |gap|:   1   3/4  1/2  1/4   0   1/4  1/2  3/4   -> θ = 0.6, EER = (1/4 + 1/4)/2
    scores = [0.9, 0.8, 0.7, 0.4, 0.6, 0.5, 0.3, 0.2]
    genuine = [1, 1, 1, 1, 0, 0, 0, 0]
    value, theta = eer(scores, genuine)
    assert theta == pytest.approx(0.6)
    assert value == pytest.approx(0.25)
    assert eer_threshold(scores, genuine) == theta


def test_eer_tie_between_thresholds_resolves_to_largest_with_tied_scores():
    # genuine 0.8 0.5 | impostor 0.5 0.2 (a genuine and an impostor share 0.5)
    #   θ:    0.2  0.5  0.8
    #  FAR:    1   1/2   0      (the 0.5 impostor is accepted at θ = 0.5)
    #  FRR:    0    0   1/2
    # |gap|:   1   1/2  1/2    -> tie between 0.5 and 0.8: the largest, 0.8; EER = (0 + 1/2)/2
    scores = [0.8, 0.5, 0.5, 0.2]
    genuine = [True, True, False, False]
    value, theta = eer(scores, genuine)
    assert theta == pytest.approx(0.8)
    assert value == pytest.approx(0.25)


def test_eer_ties_compared_exactly_not_in_floating_point():
    # impostor 0.1 0.7 | genuine 0.2 0.5 0.5 0.5 0.9 (2 impostors, 5 genuine)
    #   θ:    0.1  0.2  0.5   0.7   0.9
    #  FAR:    1   1/2  1/2   1/2    0
    #  FRR:    0    0   1/5   4/5   4/5
    # |gap|:   1   1/2  3/10  3/10  4/5  -> exact tie 0.5 / 0.7: the largest, 0.7.
    # In floating point |1/2 - 1/5| = 0.3 < |1/2 - 4/5| = 0.30000000000000004, so a float
    # argmin would wrongly pick 0.5. EER = (1/2 + 4/5)/2 = 0.65.
    scores = np.array([0.1, 0.7, 0.2, 0.5, 0.5, 0.5, 0.9])
    genuine = np.array([0, 0, 1, 1, 1, 1, 1])
    value, theta = eer(scores, genuine)
    assert theta == pytest.approx(0.7)
    assert value == pytest.approx(0.65)


def test_perfect_separation_and_torch_input():
    # genuine 0.95 0.9 | impostor 0.3 0.1: θ = 0.9 gives FAR = FRR = 0; at θ = 0.95
    # FRR = 1/2, at 0.3 FAR = 1/2 -> unique θ = 0.9, EER 0, accuracy 1.
    scores = torch.tensor([0.95, 0.3, 0.9, 0.1])
    genuine = torch.tensor([1, 0, 1, 0])
    value, theta = eer(scores, genuine)
    assert theta == pytest.approx(0.9)
    assert value == 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="both genuine and impostor"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="labels"):
        eer([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError, match="0/1"):
        eer([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        eer([0.1, float("nan")], [0, 1])


def test_eer_equals_a_brute_force_search_over_every_score():
    """The roc_curve-based EER against an independent loop: every unique score as θ,
    FAR/FRR as exact fractions, the smallest |FAR − FRR|, ties to the largest θ."""
    from fractions import Fraction

    for seed in range(40):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 60))
        scores = np.round(rng.normal(size=n), int(rng.integers(0, 3)))  # many ties
        genuine = rng.integers(0, 2, n).astype(bool)
        genuine[:2] = [True, False]
        gen, imp = scores[genuine], scores[~genuine]
        best = None
        for theta in np.unique(scores):
            far = Fraction(int((imp >= theta).sum()), imp.size)
            frr = Fraction(int((gen < theta).sum()), gen.size)
            if best is None or abs(far - frr) <= best[0]:
                best = (abs(far - frr), float(theta), float((far + frr) / 2))
        assert eer(scores, genuine) == pytest.approx((best[2], best[1]), abs=1e-12)
        assert eer_threshold(scores, genuine) == best[1]

"""The paper's published tables as data, and ranking sentences that claim only what a paired
bootstrap interval supports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fame_utils.paper import TABLE1_DATASETS, paper_method, table1, table2
from fame_utils.ranking import above_baseline, ranking_sentences


def test_table1_holds_the_published_numbers():
    t = table1()
    assert list(t.index) == ["Grad-CAM", "Grad-CAM-EW", "CorrRISE", "FGGB", "FAME"]
    assert t.loc["FAME", "AR-glass Delete"] == 56.1
    assert t.loc["Grad-CAM", "CFP-FP Insert"] == 85.2
    assert t.loc["FGGB", "SCface-med Insert"] == 75.6
    assert set(TABLE1_DATASETS.values()) == {c.rsplit(" ", 1)[0] for c in t.columns}
    # FAME is the paper's best in every Table 1 column (Delete lowest, Insert highest)
    for c in t.columns:
        best = t[c].idxmin() if c.endswith("Delete") else t[c].idxmax()
        assert best == "FAME", c


def test_table2_holds_the_published_numbers_and_is_a_copy():
    t = table2()
    assert t.loc["FullGrad", "IoU@0.3"] == 48.8
    assert t.loc["FAME", "ROAD-Delete@10%"] == 0.425
    # HiResCAM equals Grad-CAM on a ResNet-50's last block in the paper too
    pd.testing.assert_series_equal(t.loc["HiResCAM"], t.loc["Grad-CAM"], check_names=False)
    t.loc["FAME", "IoU@0.3"] = 0.0
    assert table2().loc["FAME", "IoU@0.3"] == 46.1


def test_paper_method_drops_the_recipe_suffix():
    assert paper_method("FAME (reference)") == "FAME"
    assert paper_method("Grad-CAM-EW") == "Grad-CAM-EW"


def _frame(**columns):
    return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in columns.items()})


def test_a_clear_paired_difference_beats_despite_a_large_item_spread():
    rng = np.random.default_rng(1)
    base = rng.normal(50, 10, size=20)  # items differ a lot; the pairing removes that
    alternating = np.tile([0.5, -0.5], 10)
    per_item = {"IoU@0.3": _frame(A=base + 2.0 + 0.1 * alternating, B=base, C=base + alternating)}
    text = ranking_sentences(per_item)
    assert "ours A 52.4 > " in text
    assert "A beats B and C." in text or "A beats C and B." in text
    # unpaired, the ±10 spread would swamp a difference of 2: the interval must be paired
    assert "cannot separate it from" not in text


def test_inseparable_methods_are_said_to_be_inseparable():
    x = np.linspace(0, 1, 10)
    per_item = {"IoU@0.5": _frame(A=x + np.array([1, -1] * 5) * 0.1, B=x)}
    text = ranking_sentences(per_item)
    assert "cannot separate A from any other method" in text
    assert " beats " not in text.split("\n", 1)[1]
    # identical values (HiResCAM = Grad-CAM) are never separated
    same = ranking_sentences({"c": _frame(**{"Grad-CAM": x, "HiResCAM": x})})
    assert "ours Grad-CAM 0.500 = HiResCAM 0.500." in same
    assert "cannot separate Grad-CAM from any other method" in same


def test_lower_is_better_orders_and_compares_downwards():
    low = np.full(12, 50.0) + np.arange(12) * 0.01
    per_item = {"occlusion Delete": _frame(FAME=low, **{"Grad-CAM": low + 20})}
    text = ranking_sentences(
        per_item,
        table1(),
        lower_is_better={"occlusion Delete"},
        paper_columns={"occlusion Delete": "AR-glass Delete"},
    )
    assert "(lower is better): ours FAME 50.1 > Grad-CAM 70.1" in text
    assert "FAME beats Grad-CAM" in text
    assert "occlusion Delete (AR-glass Delete)" in text
    assert "The paper's best, FAME (56.1), is among" in text
    assert "in 1 of 1 columns" in text


def test_disagreement_with_the_paper_is_reported():
    x = np.arange(10.0)
    per_item = {"IoU@0.3": _frame(**{"Grad-CAM": x + 5, "FAME (paper)": x})}
    text = ranking_sentences(per_item, table2())
    assert "Grad-CAM beats FAME (paper)" in text
    assert "The paper's best, FAME (46.1), is beaten by Grad-CAM in ours" in text
    assert "among our inseparable best in 0 of 1 columns" in text


def test_too_few_items_are_never_enough_to_separate():
    text = ranking_sentences({"c": _frame(A=[3.0, 3.1, 3.2], B=[1.0, 1.1, 1.0])})
    assert "cannot separate A from any other method (3 items; a claim needs 10)" in text
    assert "A beats B" in ranking_sentences(
        {"c": _frame(A=[3.0, 3.1, 3.2] * 4, B=[1.0, 1.1, 1.0] * 4)}
    )


def test_bad_input_says_what_to_do():
    with pytest.raises(ValueError, match="missing values"):
        ranking_sentences({"c": _frame(A=[1.0, np.nan], B=[1.0, 2.0])})
    with pytest.raises(ValueError, match="two methods"):
        ranking_sentences({"c": _frame(A=[1.0, 2.0])})


def test_comparison_from_face_results_names_columns_and_maps_them_to_the_paper():
    from fame_utils.experiment.result import ExperimentResult
    from fame_utils.paper import Comparison
    from fame_utils.stats import bootstrap_interval

    per = {"FAME (paper)": [50.0, 60.0], "Grad-CAM": [70.0, 90.0]}
    rows = pd.DataFrame(
        [
            (i, f"p{i}", m, k, np.nan, np.nan, v + (k == "Insert"))
            for m, vs in per.items()
            for k in ("Delete", "Insert")
            for i, v in enumerate(vs)
        ],
        columns=["index", "item", "method", "metric", "threshold", "percent", "value"],
    )
    summary = rows.groupby(["method", "metric"])["value"].mean().unstack().loc[list(per)]
    intervals = summary.copy().astype(object)
    for (m, k), _ in summary.stack().items():
        intervals.loc[m, k] = bootstrap_interval(
            rows[(rows.method == m) & (rows.metric == k)].value
        )
    result = ExperimentResult(
        rows, summary, {}, {}, 0.5, 1, {"Delete": 1, "Insert": 1}, {}, intervals
    )
    c = Comparison.from_results(
        {"occlusion": result},
        ["Delete", "Insert"],
        table1(),
        paper_prefixes=TABLE1_DATASETS,
        lower_is_better={"Delete"},
    )
    assert c.paper_columns == {
        "occlusion Delete": "AR-glass Delete",
        "occlusion Insert": "AR-glass Insert",
    }
    assert c.per_item["occlusion Insert"]["Grad-CAM"].tolist() == [71.0, 91.0]
    table = c.table()
    assert table.loc["FAME (paper)", "occlusion Delete (paper)"] == "56.1"
    assert table.loc["Grad-CAM", "occlusion Delete (ours)"].startswith("80.0 [70.0, 90.0]")
    assert "ours FAME (paper) 55.0 > Grad-CAM 80.0" in c.sentences  # lower is better
    md = c.markdown("ours", "note", "paper")
    assert "| FAME (paper) | 55.0 [50.0, 60.0] | 56.0 [51.0, 61.0] |" in md
    assert "| FAME | 56.1 | 92.1 |" in md and md.endswith(c.sentences + "\n")


def test_sentences_print_means_with_the_tables_decimals_and_join_equal_prints():
    # IoU columns print one decimal: 8.009 is "8.0" as in the table, and two means that
    # print alike are joined by "=" (their order is not a claim; the bootstrap decides)
    x = np.linspace(0, 1, 12)
    per_item = {"IoU@0.7": _frame(A=x + 52.70, B=x + 52.68, C=x + 7.509)}
    text = ranking_sentences(per_item, decimals={"IoU@0.7": 1})
    assert "ours A 53.2 = B 53.2 > C 8.0." in text
    assert "ours A 53.200 > B 53.180" in ranking_sentences(per_item, decimals={"IoU@0.7": 3})


# ----------------------------------------------------------------------------- sanity baselines


def _hand_summary() -> dict[str, pd.DataFrame]:
    """20 items: on "IoU@0.3" a constant map beats every method (as on large boxes); on
    "ROAD-Delete@10%" both methods beat the best baseline (Random) by a clear margin."""
    rng = np.random.default_rng(0)
    n = 20
    noise = rng.normal(0, 1, n)
    noise -= noise.mean()
    iou = pd.DataFrame(
        {"FAME": 60 + noise, "Grad-CAM": 50 + noise, "Constant": 70 + noise, "Centre": 40 + noise}
    )
    road = pd.DataFrame(
        {"FAME": 3 + noise / 10, "Grad-CAM": 2 + noise / 10, "Random": 1 + noise / 10}
    )
    return {"IoU@0.3": iou, "ROAD-Delete@10%": road}


def test_a_column_a_baseline_wins_is_flagged_and_its_paper_claim_untestable():
    text = ranking_sentences(_hand_summary(), table2())
    head, iou, road = text.splitlines()
    # baselines are ranked apart: the methods' order leaves them out
    assert "ours FAME 60.0 > Grad-CAM 50.0." in iou
    assert "Best sanity baseline: Constant 70.0. No method beats Constant." in iou
    assert "**Not discriminating on this data:**" in iou
    assert "Best sanity baseline: Random 1.000. FAME and Grad-CAM beat Random." in road
    assert "Not discriminating" not in road
    assert "In 1 of 2 columns with sanity baselines no method beats the best baseline" in head
    assert "IoU@0.3 cannot discriminate on this data" in head
    assert "our data can test ROAD-Delete@10% and cannot test IoU@0.3." in head


def test_a_method_inseparable_from_the_baseline_does_not_beat_it():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 30)
    # Grad-CAM equals Random plus zero-mean noise: inseparable; FAME is clearly above both
    values = pd.DataFrame({"FAME": a + 5, "Grad-CAM": a + rng.normal(0, 1, 30), "Random": a})
    text = ranking_sentences({"X": values})
    assert "FAME beats Random; Grad-CAM does not." in text
    assert "Not discriminating" not in text
    # the same values under a name that is not a sanity baseline: an ordinary method
    plain = ranking_sentences({"X": values.rename(columns={"Random": "Noise"})})
    assert "sanity" not in plain and "FAME beats Noise and Grad-CAM." in plain


def test_above_baseline_is_the_signed_paired_improvement():
    delete = pd.DataFrame({"FAME": [50.0, 52, 54, 56], "Random": [60.0, 61, 62, 63]})
    insert = pd.DataFrame({"FAME": [80.0, 81, 82, 83], "Random": [70.0, 70, 70, 70]})
    out = above_baseline({"Delete": delete, "Insert": insert}, lower_is_better={"Delete"})
    assert list(out.index) == ["FAME"]
    # Delete: lower is better, so Random − FAME = mean(10, 9, 8, 7) = 8.5; Insert: 11.5
    assert out.loc["FAME", "Delete"].mean == pytest.approx(8.5)
    assert out.loc["FAME", "Insert"].mean == pytest.approx(11.5)
    assert out.loc["FAME", "Delete"].low > 0
    with pytest.raises(ValueError, match="no 'Random' values"):
        above_baseline({"Delete": delete[["FAME"]]})


def test_one_method_against_baselines_ranks_no_methods_but_is_compared():
    values = _hand_summary()["ROAD-Delete@10%"][["FAME", "Random"]]
    text = ranking_sentences({"ROAD-Delete@10%": values})
    head, line = text.splitlines()
    assert "our best method beats" not in head
    assert "In 0 of 1 columns with sanity baselines no method beats the best baseline." in head
    assert line == "- **ROAD-Delete@10%**: Best sanity baseline: Random 1.000. FAME beats Random."


def _delete_insert_result(per: dict[str, list[float]]):
    from fame_utils.experiment.result import ExperimentResult
    from fame_utils.stats import bootstrap_interval

    rows = pd.DataFrame(
        [
            (i, f"p{i}", m, k, np.nan, np.nan, v + (k == "Insert"))
            for m, vs in per.items()
            for k in ("Delete", "Insert")
            for i, v in enumerate(vs)
        ],
        columns=["index", "item", "method", "metric", "threshold", "percent", "value"],
    )
    summary = rows.groupby(["method", "metric"])["value"].mean().unstack().loc[list(per)]
    intervals = summary.copy().astype(object)
    for (m, k), _ in summary.stack().items():
        intervals.loc[m, k] = bootstrap_interval(
            rows[(rows.method == m) & (rows.metric == k)].value
        )
    return ExperimentResult(
        rows, summary, {}, {}, 0.5, 1, {"Delete": 1, "Insert": 1}, {}, intervals
    )


def test_table1_networks_puts_network_rows_beside_the_paper_and_flags_saturation():
    from fame_utils.paper import table1_networks

    dlib = {
        "occlusion": _delete_insert_result({"FAME (paper)": [50.0, 60.0], "FGGB": [50.0, 60.0]})
    }
    facenet = {
        "occlusion": _delete_insert_result({"FAME (paper)": [40.0, 44.0], "FGGB": [70.0, 90.0]})
    }
    md = table1_networks(
        {"dlib_resnet": dlib, "facenet": facenet}, title="T", note="n", paper_title="paper"
    )
    lines = md.splitlines()
    assert (
        lines[0] == "# T"
        and lines[2].startswith("Face Deletion")
        and "pairs: dlib_resnet: occlusion 2; facenet: occlusion 2" in lines[2]
    )
    rows = [ln for ln in lines if ln.startswith("| FAME") or ln.startswith("| FGGB")]
    assert rows[0] == "| FAME (paper) | dlib_resnet | 55.0 [50.0, 60.0] | 56.0 [51.0, 61.0] |"
    assert rows[1].startswith("| FAME (paper) | facenet | 42.0 [40.0, 44.0] |")
    assert rows[2] == "| FAME | *paper* | 56.1 | 92.1 |"  # the paper's row under its method's
    assert (
        rows[3].startswith("| FGGB | dlib_resnet |")
        and rows[5] == "| FGGB | *paper* | 58.1 | 83.7 |"
    )
    # dlib's methods tie in both columns, FaceNet's in none
    dlib_part, facenet_part = md.split("## Rankings: facenet")
    assert "**occlusion Delete saturates**: every method scores 55" in dlib_part
    assert "**occlusion Insert saturates**" in dlib_part and "saturates" not in facenet_part


def test_table1_networks_says_how_far_each_method_is_above_random():
    from fame_utils.paper import table1_networks

    # Delete: FAME 10, 20 against Random 30, 50 -> improvement (Random - FAME) 20, 30: 25
    per = {"FAME": [10.0, 20.0], "Random": [30.0, 50.0], "Centre": [30.0, 30.0]}
    md = table1_networks(
        {"n": {"pose": _delete_insert_result(per)}}, title="T", note="n", paper_title="p"
    )
    assert "| Random (sanity baseline) | n |" in md
    part = md[md.index("How far above `Random`") :].splitlines()
    assert part[2] == "| Method | pose Delete | pose Insert |"
    fame = part[4].split(" | ")
    # Insert values are the Delete ones + 1, so higher-is-better: FAME - Random = -25
    assert fame[0] == "| FAME" and fame[1].startswith("25.0 [20.0, 30.0]")
    assert fame[2].startswith("-25.0 [-30.0, -20.0]")
    assert len(part) == 5  # Centre is a baseline: no row of its own

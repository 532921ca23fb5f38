"""report/controls.py (issue 13, "Is it the synthetic images?"): the control arms against
synth{n}, the real-data learning curve's real equivalents, the sentences, figure and section.

Means, intervals and p-values are recomputed here with scipy from the Nadeau-Bengio formula
(variance of a mean over k splits s^2 (1/k + n_test/n_train), k - 1 degrees of freedom) and
Holm's step-down rule, not with mammosynth.report.stats.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from mammosynth.report import controls
from mammosynth.report.tables import scenario_metrics

LABELS = ["normal", "abnormal"]
METRICS = scenario_metrics(LABELS)
PRIMARY = "balanced_accuracy"
K = 4
RATIO = 0.25
N_TRAIN = {0: 400, 1: 420, 2: 380, 3: 400}  # mean 400
ALL_ARMS = [("synth", 0), ("synth", 64), ("dup", 64), ("aug", 64), ("synthonly", 64),
            ("real", 25), ("real", 50), ("real", 75)]


def frame(spec: dict, ckpts=("best", "last"), k=K, noise=0.0, seed=0, arch="resnet18"):
    """A metrics.csv-like long table. spec: {(arm, n): value or per-split list}; every metric
    gets that value plus, with `noise`, a per-metric perturbation of mean zero over the splits
    (so every metric's mean is the spec's mean, but the metrics' p-values differ)."""
    rng = np.random.default_rng(seed)
    rows = []
    for ckpt in ckpts:
        per_metric = {}
        for key, values in spec.items():
            base = np.broadcast_to(np.asarray(values, dtype=float), (k,))
            for m in METRICS:
                e = rng.normal(0, noise, k) if noise else np.zeros(k)
                per_metric[(key, m)] = base + (e - e.mean())
            # metrics that are another by definition (stats.same_as) are equal, as in real runs
            for m, same in (("macro_recall", "balanced_accuracy"),
                            ("sensitivity", "abnormal_recall"), ("specificity", "normal_recall")):
                per_metric[(key, m)] = per_metric[(key, same)]
        for (arm, n) in spec:
            for s in range(k):
                rows.append({"arch": arch, "arm": arm, "n": n, "split": s, "ckpt": ckpt}
                            | {m: per_metric[((arm, n), m)][s] for m in METRICS})
    return pd.DataFrame(rows)


def default_spec():
    base = np.array([0.78, 0.80, 0.82, 0.80])
    return {("synth", 0): base, ("synth", 64): base + [0.03, 0.05, 0.04, 0.06],
            ("dup", 64): base + [0.01, 0.00, 0.02, -0.01],
            ("aug", 64): base + [0.02, 0.03, 0.01, 0.02],
            ("synthonly", 64): base - [0.20, 0.15, 0.22, 0.18],
            ("real", 25): base - 0.20, ("real", 50): base - 0.12, ("real", 75): base - 0.05}


def values(long, arm, n, ckpt, metric):
    g = long[(long["arm"] == arm) & (long["n"] == n) & (long["ckpt"] == ckpt)]
    return g.sort_values("split")[metric].to_numpy(dtype=float)


def corrected(x, ratio=RATIO):
    """(mean, low, high, p vs 0) of the Nadeau-Bengio corrected t over the splits."""
    x = np.asarray(x, dtype=float)
    k = len(x)
    se = x.std(ddof=1) * math.sqrt(1 / k + ratio)
    half = sps.t.ppf(0.975, k - 1) * se
    p = 2 * sps.t.sf(abs(x.mean() / se), k - 1)
    return x.mean(), x.mean() - half, x.mean() + half, p


def holm(p):
    """Holm (1979): p_(i) adjusted = max_{j <= i} min(1, (m - j + 1) p_(j))."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    out = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def row(table, arm, n, ckpt, metric, versus):
    r = table[(table["arm"] == arm) & (table["n"] == n) & (table["ckpt"] == ckpt)
              & (table["metric"] == metric) & (table["versus"] == versus)]
    assert len(r) == 1, (arm, n, ckpt, metric, versus)
    return r.iloc[0]


# --------------------------------------------------------------------------- controls_table


@pytest.fixture
def long():
    return frame(default_spec(), noise=0.01)


@pytest.fixture
def table(long):
    return controls.controls_table(long, LABELS, ratio=RATIO, primary=PRIMARY, positive=1)


def test_columns_and_comparisons_present_as_specified(table):
    assert list(table.columns) == controls.CONTROLS_COLUMNS
    expected = {("synth", 0, ""), ("synth", 64, "synth0"), ("synth", 64, "dup64"),
                ("synth", 64, "aug64"), ("dup", 64, "synth0"), ("aug", 64, "synth0"),
                ("synthonly", 64, "synth0"), ("real", 25, "synth0"), ("real", 50, "synth0"),
                ("real", 75, "synth0")}
    for ckpt in ("best", "last"):
        got = table[table["ckpt"] == ckpt]
        assert set(zip(got["arm"], got["n"], got["versus"])) == expected
        sizes = got.groupby(["arm", "n", "versus"]).size()
        assert (sizes == len(METRICS)).all()
    # synth0 has a mean but no comparison; synthonly is never a synth{n} comparison
    base = table[table["versus"] == ""]
    assert base[["diff", "p", "p_holm"]].isna().all().all()
    assert base["mean"].notna().all()
    assert not (table["versus"] == "synthonly64").any()


def test_means_and_paired_differences_match_the_corrected_formula(long, table):
    for ckpt in ("best", "last"):
        for metric in (PRIMARY, "auc", "normal_f1"):
            for arm, n in ALL_ARMS:
                x = values(long, arm, n, ckpt, metric)
                mean, low, high, _ = corrected(x)
                versus = "" if (arm, n) == ("synth", 0) else "synth0"
                r = row(table, arm, n, ckpt, metric, versus)
                assert r["splits"] == K
                assert r["mean"] == pytest.approx(mean, abs=1e-12)
                assert r["sd"] == pytest.approx(x.std(ddof=1), abs=1e-12)
                assert r["ci_low"] == pytest.approx(max(0.0, low), abs=1e-12)
                assert r["ci_high"] == pytest.approx(min(1.0, high), abs=1e-12)
            for arm, n, other, m in [("synth", 64, "synth", 0), ("synth", 64, "dup", 64),
                                     ("synth", 64, "aug", 64), ("dup", 64, "synth", 0),
                                     ("synthonly", 64, "synth", 0), ("real", 25, "synth", 0)]:
                d = values(long, arm, n, ckpt, metric) - values(long, other, m, ckpt, metric)
                diff, low, high, p = corrected(d)
                r = row(table, arm, n, ckpt, metric, f"{other}{m}")
                assert r["diff"] == pytest.approx(diff, abs=1e-12)
                assert r["diff_low"] == pytest.approx(low, abs=1e-12)
                assert r["diff_high"] == pytest.approx(high, abs=1e-12)
                assert r["p"] == pytest.approx(p, rel=1e-9)
                assert r["note"] == ""


def test_holm_within_each_comparison_primary_unadjusted(table):
    compared = table[table["versus"] != ""]
    for key, g in compared.groupby(["arch", "arm", "n", "ckpt", "versus"]):
        by = g.set_index("metric")
        assert by.loc[PRIMARY, "p_holm"] == by.loc[PRIMARY, "p"]
        assert (by["p_holm"] >= by["p"] - 1e-15).all(), key
        # macro recall is balanced accuracy, sensitivity/specificity are per-class recalls:
        # one hypothesis each, so the family is every other metric
        family = [m for m in METRICS if m not in (PRIMARY, "macro_recall", "sensitivity",
                                                  "specificity")]
        np.testing.assert_allclose(by.loc[family, "p_holm"], holm(by.loc[family, "p"]),
                                   rtol=1e-12)
        assert by.loc["macro_recall", "p_holm"] == by.loc[PRIMARY, "p_holm"]
        assert by.loc["sensitivity", "p_holm"] == by.loc["abnormal_recall", "p_holm"]


def test_only_the_arms_that_ran_are_compared():
    spec = default_spec()
    del spec[("aug", 64)]
    table = controls.controls_table(frame(spec), LABELS, ratio=RATIO, primary=PRIMARY)
    synth = table[(table["arm"] == "synth") & (table["n"] == 64)]
    assert set(synth["versus"]) == {"synth0", "dup64"}


def test_a_scenarios_only_table_is_read_as_synth_arms():
    old = frame({("synth", 0): 0.8, ("synth", 64): [0.81, 0.83, 0.82, 0.84]})
    old = old.drop(columns="arm").rename(columns={"n": "synth"})
    table = controls.controls_table(old, LABELS, ratio=RATIO, primary=PRIMARY)
    assert set(zip(table["arm"], table["n"], table["versus"])) == {("synth", 0, ""),
                                                                   ("synth", 64, "synth0")}


# --------------------------------------------------------------------------- real equivalents


def linear_spec(synth, offsets=(-0.01, 0.0, 0.01, 0.0)):
    """metric = 0.5 + 0.003 p on the learning curve (per-split offsets of mean zero)."""
    off = np.asarray(offsets)
    spec = {("real", p): 0.5 + 0.003 * p + off for p in (25, 50, 75)}
    spec[("synth", 0)] = 0.8 + off
    spec[("synth", 64)] = synth
    return spec


def equivalents(spec, **kw):
    return controls.real_equivalents(frame(spec), LABELS, N_TRAIN, ratio=RATIO,
                                     primary=PRIMARY, **kw)


def pick(eq, metric=PRIMARY, ckpt="best", n=64):
    r = eq[(eq["metric"] == metric) & (eq["ckpt"] == ckpt) & (eq["n"] == n)]
    assert len(r) == 1
    return r.iloc[0]


def test_linear_curve_is_inverted_exactly_with_its_interval():
    synth = np.array([0.70, 0.72, 0.69, 0.73])  # mean 0.71 => 70 %
    eq = equivalents(linear_spec(synth))
    assert list(eq.columns) == controls.EQUIVALENT_COLUMNS
    assert set(eq["metric"]) == {"balanced_accuracy", "macro_f1", "auc"}
    assert set(eq["ckpt"]) == {"best", "last"}
    r = pick(eq)
    assert r["status"] == controls.WITHIN
    assert r["synth_mean"] == pytest.approx(0.71)
    assert r["percent"] == pytest.approx(70.0, abs=1e-9)
    assert r["images"] == pytest.approx(70.0 * 400 / 100, abs=1e-7)
    _, low, high, _ = corrected(synth)
    assert 0.575 < low < high < 0.8  # both ends on the curve
    assert r["percent_low"] == pytest.approx((low - 0.5) / 0.003, abs=1e-7)
    assert r["percent_high"] == pytest.approx((high - 0.5) / 0.003, abs=1e-7)
    assert r["images_low"] == pytest.approx(r["percent_low"] * 4, abs=1e-7)
    assert r["images_high"] == pytest.approx(r["percent_high"] * 4, abs=1e-7)
    assert r["equivalent"] == "70 %"
    assert r["interval"] == f"{r['percent_low']:.0f} % to {r['percent_high']:.0f} %"
    assert r["note"] == ""


def test_images_use_the_mean_training_size_of_the_splits():
    eq = controls.real_equivalents(frame(linear_spec(0.71)), LABELS, {0: 100, 1: 200, 2: 300,
                                                                      3: 600},
                                   ratio=RATIO, primary=PRIMARY)
    r = pick(eq)
    assert r["percent"] == pytest.approx(70.0, abs=1e-9)
    assert r["images"] == pytest.approx(70.0 * 300 / 100, abs=1e-7)
    assert r["interval"].startswith("no interval")  # the same value on every split
    assert math.isnan(r["percent_low"]) and math.isnan(r["percent_high"])


def test_isotonic_step_on_a_non_monotone_curve():
    off = np.array([-0.01, 0.0, 0.01, 0.0])
    spec = {("real", 25): 0.60 + off, ("real", 50): 0.70 + off, ("real", 75): 0.65 + off,
            ("synth", 0): 0.80 + off, ("synth", 64): 0.6875 + off}
    r = pick(equivalents(spec))
    # isotonic pools 50 % and 75 % at 0.675: 0.6875 lies between 75 % (0.675) and 100 % (0.8)
    assert r["percent"] == pytest.approx(75 + 0.0125 / 0.125 * 25, abs=1e-7)
    # (read off the raw curve, it would be 25 + 0.0875 / 0.1 * 25 = 46.9 %)
    spec[("synth", 64)] = 0.675 + off
    r = pick(equivalents(spec))
    assert r["status"] == controls.WITHIN
    assert r["percent"] == pytest.approx(50.0, abs=1e-7)
    assert "flat from 50 % to 75 %" in r["note"]


def test_beyond_and_below_the_curve():
    r = pick(equivalents(linear_spec(np.array([0.84, 0.86, 0.85, 0.85]))))
    assert r["status"] == controls.BEYOND
    assert math.isnan(r["percent"]) and math.isnan(r["images"])
    assert r["equivalent"] == "> 100 %"
    assert r["interval"] == "> 100 %"  # both CI ends above the curve too
    r = pick(equivalents(linear_spec(np.array([0.54, 0.56, 0.55, 0.55]))))
    assert r["status"] == controls.BELOW
    assert math.isnan(r["percent"])
    assert r["equivalent"] == "< 25 %"
    assert r["interval"] == "< 25 %"


def test_sentence_beyond_the_curve():
    (text,) = _sentences(linear_spec(np.array([0.84, 0.86, 0.85, 0.85])))
    assert "better than scenario 0" in text
    assert ("above the curve's value with all the real training images (> 100 %; 95% CI "
            "> 100 %): worth more than all the real images we have, no number without more "
            "real data") in text


def test_an_interval_end_off_the_curve_is_open():
    synth = np.array([0.72, 0.80, 0.76, 0.84])  # mean 0.78 (93.3 %), CI above 0.8
    r = pick(equivalents(linear_spec(synth)))
    _, low, high, _ = corrected(synth)
    assert high > 0.8 and 0.575 < low
    assert r["status"] == controls.WITHIN
    assert r["percent"] == pytest.approx((0.78 - 0.5) / 0.003, abs=1e-7)
    assert r["percent_low"] == pytest.approx((low - 0.5) / 0.003, abs=1e-7)
    assert math.isnan(r["percent_high"]) and math.isnan(r["images_high"])
    assert r["interval"].endswith("to > 100 %")


def test_no_real_fraction_no_equivalents():
    spec = {k: v for k, v in default_spec().items() if k[0] != "real"}
    eq = equivalents(spec)
    assert eq.empty and list(eq.columns) == controls.EQUIVALENT_COLUMNS


def test_primary_metric_comes_first_and_is_always_included():
    eq = controls.real_equivalents(frame(linear_spec(0.71)), LABELS, N_TRAIN, ratio=RATIO,
                                   primary="sensitivity")
    assert list(dict.fromkeys(eq["metric"])) == ["sensitivity", "balanced_accuracy",
                                                 "macro_f1", "auc"]


# --------------------------------------------------------------------------- sentences


def _sentences(spec):
    long = frame(spec)
    table = controls.controls_table(long, LABELS, ratio=RATIO, primary=PRIMARY)
    eq = controls.real_equivalents(long, LABELS, N_TRAIN, ratio=RATIO, primary=PRIMARY)
    return controls.sentences(table, eq, PRIMARY)


def test_sentence_for_a_clear_win_and_a_tie():
    base = np.array([0.70, 0.74, 0.72, 0.76])
    spec = {("synth", 0): base, ("synth", 64): base + [0.05, 0.06, 0.05, 0.06],
            ("dup", 64): base + [0.04, 0.07, 0.03, 0.08],  # synth - dup: +.01 -.01 +.02 -.02
            ("aug", 64): base + [0.00, 0.01, -0.01, 0.00],
            ("real", 50): base - 0.1}
    (text,) = _sentences(spec)
    assert text.startswith("resnet18, 64 synthetic images (balanced accuracy, best weights)")
    assert "better than scenario 0 (difference +0.055" in text
    assert "not distinguishable from 64 duplicated real images (difference +0.000" in text
    assert "better than 64 augmented copies of real images" in text
    assert "its mean is above the curve's value with all the real training images (> 100 %" \
        in text
    assert "worth more" not in text  # the CI's low end is on the curve
    assert text.endswith(".")


def test_sentence_for_a_loss_with_the_learning_curve():
    base = np.array([0.78, 0.80, 0.82, 0.80])
    spec = linear_spec(base - 0.09 + [0.01, -0.01, 0.02, -0.02])
    (text,) = _sentences(spec)
    assert "worse than scenario 0" in text
    assert "matches about 70 % of the real training images alone (≈ 280 images; 95% CI" in text


def test_sentence_without_variance():
    base = np.array([0.70, 0.74, 0.72, 0.76])
    spec = {("synth", 0): base, ("synth", 64): base + 0.02, ("dup", 64): base + 0.02}
    (text,) = _sentences(spec)
    assert ("+0.020 against scenario 0 on every split (no variance over splits, so no "
            "interval or p-value)") in text
    assert "+0.000 against 64 duplicated real images on every split" in text
    assert "better than" not in text and "worse than" not in text
    assert "learning curve" not in text  # no real fraction


# --------------------------------------------------------------------------- figure, section


def test_figure_is_written(tmp_path, long):
    long2 = pd.concat([long, frame(default_spec(), arch="vgg16", seed=1)])
    out = controls.figure(long2, PRIMARY, tmp_path / "controls-all.png", ratio=RATIO)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000


def test_section(tmp_path, long):
    text, tables, figs = controls.section(long, LABELS, N_TRAIN, ratio=RATIO, primary=PRIMARY,
                                          positive=1, fig_dir=tmp_path)
    assert text.startswith("<h2 id='controls'>Is it the synthetic images?</h2>")
    assert set(tables) == {"controls.csv", "real_equivalents.csv"}
    assert len(tables["real_equivalents.csv"]) > 0
    assert figs == [tmp_path / controls.FIGURE] and figs[0].is_file()
    assert "resnet18, 64 synthetic images" in text
    for word in ("dup n", "aug n", "synthonly n", "real p", "isotonic", "Holm", "paired by split"):
        assert word in text
    assert text.count("<table") == 2


def test_section_is_empty_without_controls(tmp_path):
    only = frame({("synth", 0): 0.8, ("synth", 64): [0.81, 0.83, 0.82, 0.84]})
    assert controls.section(only, LABELS, N_TRAIN, ratio=RATIO, primary=PRIMARY,
                            positive=1, fig_dir=tmp_path) == ("", {}, [])
    assert not list(tmp_path.iterdir())

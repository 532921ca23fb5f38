"""An independent check of the report's statistics (issue 12, "numbers that survive review").

Every interval and p-value of the scenario and checkpoint tables is recomputed here from the
metrics table and the split sizes with scipy and the formulas of the papers - not with
mammosynth.report.stats:

- Nadeau and Bengio (2003), corrected resampled t: the correlation between two splits' results
  is rho = n_test / (n_test + n_train), so the variance of a mean over J splits is
  s^2 (1/J + rho / (1 - rho)) = s^2 (1/J + n_test/n_train), with J - 1 degrees of freedom;
  rho = 0 is the ordinary (paired) t;
- Welch (1947) / Satterthwaite (1946): a difference of two independent means with variances
  v_a, v_b estimated on k_a - 1 and k_b - 1 degrees of freedom has
  df = (v_a + v_b)^2 / (v_a^2 / (k_a - 1) + v_b^2 / (k_b - 1));
- Holm (1979): sorted p_(1) <= ... <= p_(m), adjusted
  p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).

Plus the metric definitions the report relies on (macro averages over the classes present,
undefined precision NaN, the positive class) and the bootstraps' skipping of resamples that lack
a class.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn import metrics as skm

from mammosynth.classify import evaluate
from mammosynth.classify.evaluate import bootstrap_ci, compute_metrics, positive_index
from mammosynth.report import stats
from mammosynth.report.tables import (DASH, PAIRED, UNPAIRED, checkpoint_markdown,
                                      checkpoint_metrics, checkpoint_table, collect,
                                      scenario_markdown, scenario_metrics, scenario_table)

LABELS = ["normal", "abnormal"]
K = 5
N_TRAIN, N_VAL, N_TEST = 80, 10, 20  # every split: ratio 0.25, rho 0.2


# --------------------------------------------------------------------------- fixtures / helpers


def split_frames(k=K, n_train=N_TRAIN, n_val=N_VAL, n_test=N_TEST):
    """Split files as splits.py writes them (image_id, subset), with known subset sizes."""
    out = {}
    for s in range(k):
        train, val, test = (n_train[s], n_val, n_test[s]) if isinstance(n_train, list) else \
            (n_train, n_val, n_test)
        subset = ["train"] * train + ["val"] * val + ["test"] * test
        order = np.random.default_rng(s).permutation(len(subset))
        out[s] = pd.DataFrame({"image_id": [f"i{i}" for i in range(len(subset))],
                               "subset": np.asarray(subset)[order]})
    return out


def metrics_long(seed=0, k=K, labels=LABELS, synths=(0, 100), ckpts=("best",), effect=0.03,
                 drop=()):
    """A metrics.csv-like long table: arch, synth, split, ckpt + every metric column, values in
    (0.4, 0.9); each scenario > 0 is the baseline plus `effect` plus noise on the same split.
    drop: (synth, split) rows left out."""
    rng = np.random.default_rng(seed)
    metrics = sorted(set(scenario_metrics(labels)) | set(checkpoint_metrics(labels)))
    rows = []
    for ckpt in ckpts:
        base = {s: {m: rng.uniform(0.4, 0.8) for m in metrics} for s in range(k)}
        for synth in synths:
            for s in range(k):
                if (synth, s) in drop:
                    continue
                values = {m: base[s][m] + (0 if synth == 0 else
                                           effect + rng.normal(0, 0.04)) for m in metrics}
                rows.append({"arch": "a", "synth": synth, "split": s, "ckpt": ckpt} | values)
    return pd.DataFrame(rows)


def nb_se(x, n_train=N_TRAIN, n_test=N_TEST):
    """The corrected standard error of the mean of x (Nadeau & Bengio 2003, written from rho)."""
    x = np.asarray(x, dtype=float)
    rho = n_test / (n_test + n_train)
    return math.sqrt(np.var(x, ddof=1) * (1 / len(x) + rho / (1 - rho)))


def ref_mean_ci(x, n_train=N_TRAIN, n_test=N_TEST, bounds=(0.0, 1.0)):
    x = np.asarray(x, dtype=float)
    half = sps.t.ppf(0.975, len(x) - 1) * nb_se(x, n_train, n_test)
    return max(bounds[0], x.mean() - half), min(bounds[1], x.mean() + half)


def ref_paired(a, b, n_train=N_TRAIN, n_test=N_TEST):
    """(diff, low, high, p) of b - a, corrected resampled paired t."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    se, df = nb_se(d, n_train, n_test), len(d) - 1
    half = sps.t.ppf(0.975, df) * se
    p = 2 * sps.t.sf(abs(d.mean()) / se, df)
    return d.mean(), max(-1.0, d.mean() - half), min(1.0, d.mean() + half), p


def ref_welch(a, b, n_train=N_TRAIN, n_test=N_TEST):
    """(diff, low, high, p) of mean(b) - mean(a), independent samples: Welch with each mean's
    corrected variance, Welch-Satterthwaite degrees of freedom."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = nb_se(a, n_train, n_test) ** 2, nb_se(b, n_train, n_test) ** 2
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    diff, se = b.mean() - a.mean(), math.sqrt(va + vb)
    half = sps.t.ppf(0.975, df) * se
    return diff, max(-1.0, diff - half), min(1.0, diff + half), 2 * sps.t.sf(abs(diff) / se, df)


def ref_holm(p):
    """Holm (1979) written out: sort, multiply by m - j + 1, running maximum, cap at 1."""
    p = list(p)
    valid = [i for i, x in enumerate(p) if not math.isnan(x)]
    order = sorted(valid, key=lambda i: p[i])
    m, out, best = len(order), [math.nan] * len(p), 0.0
    for j, i in enumerate(order, start=1):
        best = max(best, min(1.0, (m - j + 1) * p[i]))
        out[i] = best
    return out


def column(long, synth, metric, ckpt="best"):
    rows = long[(long["synth"] == synth) & (long["ckpt"] == ckpt)].sort_values("split")
    return rows.set_index("split")[metric].astype(float)


def predictions_for(long, n=20, seed=3, labels=LABELS):
    rng = np.random.default_rng(seed)
    out = {}
    for g in long[["arch", "synth", "split", "ckpt"]].itertuples(index=False):
        y = np.arange(n) % len(labels)
        prob = rng.dirichlet(np.ones(len(labels)), n)
        out[tuple(g)] = pd.DataFrame({"image_id": [f"t{i}" for i in range(n)], "y": y} |
                                     {f"prob_{lab}": prob[:, i] for i, lab in enumerate(labels)})
    return out


# --------------------------------------------------------------------------- nb ratio


def test_nb_ratio_is_test_over_train_of_each_split_file():
    splits = split_frames()
    assert stats.nb_ratio(splits) == pytest.approx(N_TEST / N_TRAIN)
    # unequal splits: the mean of the per-split ratios (1/3 and 0.6), not the ratio of sums
    uneven = split_frames(k=2, n_train=[60, 50], n_test=[20, 30])
    assert stats.nb_ratio(uneven) == pytest.approx((20 / 60 + 30 / 50) / 2)
    assert stats.nb_ratio({}) == 0.0
    assert stats.factor(5, 0.25) == pytest.approx(1 + 5 * 0.25)


# --------------------------------------------------------------------------- one mean / paired


def test_mean_ci_corrected_equals_the_formula_and_ratio_0_the_plain_t():
    x = [0.71, 0.74, 0.69, 0.77, 0.72]
    ci = stats.mean_ci(x, N_TEST / N_TRAIN)
    assert (ci["low"], ci["high"]) == pytest.approx(ref_mean_ci(x))
    plain = stats.mean_ci(x, 0.0)
    low, high = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert (plain["low"], plain["high"]) == pytest.approx((low, high))
    # the correction widens the half-width by exactly sqrt(1 + k ratio)
    widen = (ci["high"] - ci["low"]) / (plain["high"] - plain["low"])
    assert widen == pytest.approx(math.sqrt(stats.factor(len(x), N_TEST / N_TRAIN)))
    assert widen == pytest.approx(math.sqrt(1 + len(x) * 0.25))


def test_paired_ratio_0_is_scipys_paired_t():
    a = [0.70, 0.72, 0.75, 0.71, 0.74]
    b = [0.75, 0.74, 0.80, 0.72, 0.79]
    got = stats.paired(a, b, 0.0)
    res = sps.ttest_rel(b, a)
    assert got["p"] == pytest.approx(res.pvalue)
    ci = res.confidence_interval(0.95)
    assert (got["diff_low"], got["diff_high"]) == pytest.approx((ci.low, ci.high))
    assert got["diff"] == pytest.approx(np.mean(np.subtract(b, a))) and got["n"] == 5


def test_paired_corrected_t_is_scipys_t_shrunk_by_the_factor():
    """The corrected statistic is the paired t divided by sqrt(1 + k n_test/n_train), on the
    same k - 1 degrees of freedom; the interval is the plain one widened by that factor."""
    a = np.array([0.70, 0.72, 0.75, 0.71, 0.74, 0.69])
    b = np.array([0.75, 0.74, 0.80, 0.72, 0.79, 0.73])
    ratio, k = 0.25, len(a)
    got = stats.paired(a, b, ratio)
    res = sps.ttest_rel(b, a)
    shrink = math.sqrt(1 + k * ratio)
    assert got["p"] == pytest.approx(2 * sps.t.sf(abs(res.statistic) / shrink, res.df))
    assert got["p"] > res.pvalue
    plain = res.confidence_interval(0.95)
    mid = (plain.low + plain.high) / 2
    assert (got["diff_low"], got["diff_high"]) == pytest.approx(
        (mid - shrink * (mid - plain.low), mid + shrink * (plain.high - mid)))
    assert (got["diff"], got["diff_low"], got["diff_high"], got["p"]) == pytest.approx(
        ref_paired(a, b))


def test_paired_no_variance_and_too_few():
    a = np.array([0.5, 0.625, 0.75, 0.875])  # dyadic: b - a is exactly 0.125 everywhere
    got = stats.paired(a, a + 0.125, 0.25)
    assert got["diff"] == 0.125
    assert math.isnan(got["p"]) and math.isnan(got["diff_low"]) and math.isnan(got["diff_high"])
    assert got["note"] == stats.NO_VARIANCE
    same = stats.paired(a, a, 0.25)
    assert same["diff"] == 0 and math.isnan(same["p"]) and same["note"] == stats.NO_VARIANCE
    one = stats.paired([0.5], [0.6], 0.25)
    assert math.isnan(one["p"]) and one["note"] == stats.TOO_FEW and one["n"] == 1
    # a NaN on either side drops that pair (and its degree of freedom)
    nan = stats.paired([0.5, 0.6, math.nan, 0.7], [0.55, 0.62, 0.9, 0.8], 0.0)
    assert nan["n"] == 3
    assert nan["p"] == pytest.approx(sps.ttest_rel([0.55, 0.62, 0.8], [0.5, 0.6, 0.7]).pvalue)


def test_paired_constant_difference_of_real_metric_values():
    a = np.array([16, 17, 15, 18, 14]) / 20  # accuracies on 20 test images
    b = np.array([17, 18, 16, 19, 15]) / 20  # one more image right on every split
    got = stats.paired(a, b, 0.25)
    assert got["diff"] == pytest.approx(0.05)
    assert math.isnan(got["p"]) and got["note"] == stats.NO_VARIANCE


# --------------------------------------------------------------------------- unpaired (Welch)


def test_unpaired_ratio_0_is_scipys_welch_test():
    a = [0.70, 0.72, 0.75, 0.71, 0.74]
    b = [0.78, 0.74, 0.85, 0.72]
    got = stats.unpaired(a, b, 0.0)
    res = sps.ttest_ind(b, a, equal_var=False)
    assert got["p"] == pytest.approx(res.pvalue)
    ci = res.confidence_interval(0.95)
    assert (got["diff_low"], got["diff_high"]) == pytest.approx((ci.low, ci.high))
    assert got["diff"] == pytest.approx(np.mean(b) - np.mean(a)) and got["n"] == 4


def test_unpaired_corrected_equals_welch_with_corrected_variances():
    a = [0.70, 0.72, 0.75, 0.71, 0.74]
    b = [0.78, 0.74, 0.85, 0.72]
    got = stats.unpaired(a, b, N_TEST / N_TRAIN)
    assert (got["diff"], got["diff_low"], got["diff_high"], got["p"]) == pytest.approx(
        ref_welch(a, b))
    # equal k: both variances grow by 1 + k ratio, Welch's df does not change, t shrinks
    b5 = b + [0.8]
    res = sps.ttest_ind(b5, a, equal_var=False)
    got = stats.unpaired(a, b5, 0.25)
    assert got["p"] == pytest.approx(
        2 * sps.t.sf(abs(res.statistic) / math.sqrt(1 + 5 * 0.25), res.df))
    # no variance on either side: no interval, no p
    flat = stats.unpaired([0.5, 0.5, 0.5], [0.625, 0.625], 0.25)
    assert math.isnan(flat["p"]) and flat["note"] == stats.NO_VARIANCE
    assert flat["diff"] == pytest.approx(0.125)
    assert stats.unpaired([0.5], [0.6, 0.7], 0.25)["note"] == stats.TOO_FEW


# --------------------------------------------------------------------------- the scenario table


def test_scenario_table_rigorous_recomputed_independently():
    splits = split_frames()
    ratio = stats.nb_ratio(splits)
    long = metrics_long(seed=1)
    table = scenario_table(long, LABELS, ratio=ratio, primary="balanced_accuracy")
    metrics = scenario_metrics(LABELS)
    assert len(table) == 2 * len(metrics)
    for r in table.itertuples(index=False):
        x = column(long, r.synth, r.metric)
        assert r.splits == K and r.mean == pytest.approx(x.mean())
        assert r.sd == pytest.approx(x.std(ddof=1))
        assert (r.ci_low, r.ci_high) == pytest.approx(ref_mean_ci(x))
        if r.synth == 0:
            assert pd.isna(r.diff_vs_0) and pd.isna(r.p) and pd.isna(r.p_holm)
            continue
        assert r.test == PAIRED
        base = column(long, 0, r.metric)
        assert (r.diff_vs_0, r.diff_low, r.diff_high, r.p) == pytest.approx(ref_paired(base, x))


def test_scenario_table_ratio_0_is_scipys_paired_t():
    long = metrics_long(seed=2)
    table = scenario_table(long, LABELS, ratio=0.0)
    for r in table[table["synth"] == 100].itertuples(index=False):
        x, base = column(long, 100, r.metric), column(long, 0, r.metric)
        res = sps.ttest_rel(x, base)
        ci = res.confidence_interval(0.95)
        assert r.p == pytest.approx(res.pvalue)
        assert (r.diff_low, r.diff_high) == pytest.approx((max(-1, ci.low), min(1, ci.high)))
        low, high = sps.t.interval(0.95, K - 1, loc=x.mean(), scale=sps.sem(x))
        assert (r.ci_low, r.ci_high) == pytest.approx((max(0, low), min(1, high)))


def test_scenario_table_corrected_interval_is_sqrt_factor_wider():
    long = metrics_long(seed=3)
    plain = scenario_table(long, LABELS, ratio=0.0).set_index(["synth", "metric"])
    corrected = scenario_table(long, LABELS, ratio=0.25).set_index(["synth", "metric"])
    widen = math.sqrt(stats.factor(K, 0.25))
    checked = 0
    for key in plain.index:
        p, c = plain.loc[key], corrected.loc[key]
        assert c["mean"] == pytest.approx(p["mean"])
        if 0 < c["ci_low"] and c["ci_high"] < 1:  # not clipped
            assert c["ci_high"] - c["ci_low"] == pytest.approx(widen * (p["ci_high"] - p["ci_low"]))
            checked += 1
        if key[0] == 100 and -1 < c["diff_low"] and c["diff_high"] < 1:
            assert c["diff_high"] - c["diff_low"] == pytest.approx(
                widen * (p["diff_high"] - p["diff_low"]))
            assert c["p"] >= p["p"]
            checked += 1
    assert checked >= len(scenario_metrics(LABELS))


def test_scenario_table_paired_uses_the_common_splits_only():
    long = metrics_long(seed=4, drop={(100, 2)})
    table = scenario_table(long, LABELS, ratio=0.25).set_index(["synth", "metric"])
    x = column(long, 100, "accuracy")
    base = column(long, 0, "accuracy").loc[x.index]
    r = table.loc[(100, "accuracy")]
    assert r["splits"] == K - 1
    assert (r["diff_vs_0"], r["diff_low"], r["diff_high"], r["p"]) == pytest.approx(
        ref_paired(base, x))


def test_scenario_table_paper_protocol_is_unpaired_welch():
    long = metrics_long(seed=5, drop={(100, 4)})  # 5 baseline splits, 4 scenario splits
    splits = split_frames()
    table = scenario_table(long, LABELS, protocol="paper", ratio=stats.nb_ratio(splits))
    rows = table[table["synth"] == 100]
    assert set(rows["test"]) == {UNPAIRED}
    for r in rows.itertuples(index=False):
        a, b = column(long, 0, r.metric), column(long, 100, r.metric)
        assert len(a) == 5 and len(b) == 4
        assert (r.diff_vs_0, r.diff_low, r.diff_high, r.p) == pytest.approx(ref_welch(a, b))
    # ratio 0: scipy's Welch test
    plain = scenario_table(long, LABELS, protocol="paper", ratio=0.0)
    for r in plain[plain["synth"] == 100].itertuples(index=False):
        a, b = column(long, 0, r.metric), column(long, 100, r.metric)
        res = sps.ttest_ind(b, a, equal_var=False)
        ci = res.confidence_interval(0.95)
        assert r.p == pytest.approx(res.pvalue)
        assert (r.diff_low, r.diff_high) == pytest.approx((max(-1, ci.low), min(1, ci.high)))
    text = scenario_markdown(table, ["accuracy", "balanced_accuracy"], "balanced_accuracy")
    assert "unpaired" in text and UNPAIRED in text


def test_scenario_table_constant_difference_has_no_p():
    """Every split the same non-zero change (dyadic values, so exactly the same): no interval,
    p NaN (not 0), the note says why, and the page shows no p=0."""
    long = metrics_long(seed=6)
    base = np.array([0.5, 0.625, 0.75, 0.5625, 0.6875])
    long.loc[long["synth"] == 0, "accuracy"] = base
    long.loc[long["synth"] == 100, "accuracy"] = base + 0.125
    table = scenario_table(long, LABELS, ratio=0.25)
    r = table.set_index(["synth", "metric"]).loc[(100, "accuracy")]
    assert r["diff_vs_0"] == pytest.approx(0.125)
    assert pd.isna(r["p"]) and pd.isna(r["diff_low"]) and pd.isna(r["diff_high"])
    assert pd.isna(r["p_holm"])
    assert r["note"] == stats.NO_VARIANCE
    text = scenario_markdown(table, ["accuracy", "balanced_accuracy"], "balanced_accuracy")
    assert "p=0 " not in text and "p=0|" not in text and "p=0.000" not in text
    assert not any(cell.strip().endswith("p=0") for cell in text.split("|"))
    assert "+0.125 (no variance over splits)" in text
    # the other metrics' Holm family leaves the NaN out
    others = table[(table["synth"] == 100) & (table["metric"] != "balanced_accuracy")]
    assert others["p_holm"].notna().sum() == others["p"].notna().sum() == len(others) - 1


def test_scenario_table_constant_difference_from_fractions_has_no_p():
    long = metrics_long(seed=6)
    base = np.array([16, 17, 15, 18, 14]) / 20
    long.loc[long["synth"] == 0, "accuracy"] = base
    long.loc[long["synth"] == 100, "accuracy"] = np.array([17, 18, 16, 19, 15]) / 20
    table = scenario_table(long, LABELS, ratio=0.25)
    r = table.set_index(["synth", "metric"]).loc[(100, "accuracy")]
    assert pd.isna(r["p"]) and r["note"] == stats.NO_VARIANCE
    assert "(no variance over splits)" in scenario_markdown(table, ["accuracy"])


def test_scenario_table_one_split_is_too_few():
    long = metrics_long(seed=7, k=1)
    table = scenario_table(long, LABELS, ratio=0.25)
    r = table.set_index(["synth", "metric"]).loc[(100, "accuracy")]
    assert r["splits"] == 1 and pd.isna(r["ci_low"]) and pd.isna(r["p"])
    assert r["note"] == stats.TOO_FEW
    assert "fewer than 2 splits" in scenario_markdown(table, ["accuracy"])


# --------------------------------------------------------------------------- Holm


def test_holm_textbook_example():
    # p = .01 .04 .03 .005 (m = 4): sorted .005 .01 .03 .04 -> 4*.005 = .02, 3*.01 = .03,
    # 2*.03 = .06, 1*.04 = .04 raised to .06 (monotone step)
    p = [0.01, 0.04, 0.03, 0.005]
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert list(stats.holm(p)) == pytest.approx(ref_holm(p))
    # rejection at 0.05: only .005 and .01 (Holm stops at .03 > .05/2)
    assert list(stats.holm(p) < 0.05) == [True, False, False, True]
    # capped at 1, NaN kept and not counted in the family (m = 2 here)
    assert list(stats.holm([0.6, 0.7, 0.9])) == [1.0, 1.0, 1.0]
    out = stats.holm([math.nan, 0.01, 0.04])
    assert math.isnan(out[0]) and list(out[1:]) == pytest.approx([0.02, 0.04])
    assert stats.holm([]).shape == (0,)


def test_holm_is_monotone_and_dominates_raw_p():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(1, 15))
        p = rng.uniform(0, 0.2, m) ** rng.uniform(0.5, 3)
        if m > 2:
            p[rng.integers(0, m)] = p[rng.integers(0, m)]  # ties
        adj = stats.holm(p)
        assert list(adj) == pytest.approx(ref_holm(p))
        order = np.argsort(p, kind="stable")
        assert np.all(np.diff(adj[order]) >= 0)  # same order as the raw p-values
        assert np.all(adj >= p - 1e-15) and np.all(adj <= 1)
        assert adj[order[0]] == pytest.approx(min(1, m * p[order[0]]))  # Bonferroni at the top


def test_holm_family_excludes_the_primary_metric():
    long = metrics_long(seed=8, effect=0.08)
    for primary in ("balanced_accuracy", "macro_f1"):
        table = scenario_table(long, LABELS, ratio=0.25, primary=primary)
        rows = table[table["synth"] == 100].set_index("metric")
        assert rows.loc[primary, "p_holm"] == rows.loc[primary, "p"]
        # metrics that are another by definition count once: macro recall is balanced accuracy,
        # sensitivity / specificity are the abnormal / normal recall
        same = {"macro_recall": "balanced_accuracy", "sensitivity": "abnormal_recall",
                "specificity": "normal_recall"}
        others = rows.drop(index=[primary, *same])
        assert len(others) == len(scenario_metrics(LABELS)) - 1 - len(same)
        assert list(others["p_holm"]) == pytest.approx(ref_holm(list(others["p"])))
        for dup, original in same.items():
            if primary == original:  # the primary's duplicate shows the primary's nominal p
                assert rows.loc[dup, "p_holm"] == rows.loc[primary, "p"]
            else:
                assert rows.loc[dup, "p_holm"] == rows.loc[original, "p_holm"]
        # the smallest secondary p is multiplied by the family size, not the metric count
        i = others["p"].idxmin()
        assert others.loc[i, "p_holm"] == pytest.approx(min(1, len(others) * others.loc[i, "p"]))
    # scenario 0 has no comparison, so no family
    assert table.loc[table["synth"] == 0, "p_holm"].isna().all()


def test_checkpoint_holm_family_excludes_the_primary_metric():
    long = metrics_long(seed=9, synths=(0,), ckpts=("last", "best"))
    table = checkpoint_table(long, predictions_for(long), LABELS, bootstrap=0, ratio=0.25,
                             primary="auc").set_index("metric")
    assert table.loc["auc", "p_holm"] == table.loc["auc", "p"]
    # macro recall is balanced accuracy: one hypothesis (sensitivity/specificity have no
    # per-class recall in this table, so they stay in the family)
    others = table.drop(index=["auc", "macro_recall"])
    assert list(others["p_holm"]) == pytest.approx(ref_holm(list(others["p"])))
    assert table.loc["macro_recall", "p_holm"] == table.loc["balanced_accuracy", "p_holm"]


def test_primary_metric_default_and_config():
    assert stats.primary_metric({}, LABELS) == "balanced_accuracy"
    assert stats.primary_metric({"primary_metric": None}, ["a", "b", "c"]) == "auc"
    assert stats.primary_metric({"primary_metric": "macro_f1"}, LABELS) == "macro_f1"
    assert stats.primary_metric(None, ["a", "b", "c"]) == "auc"


# --------------------------------------------------------------------------- the checkpoint table


def test_checkpoint_table_recomputed_independently():
    long = metrics_long(seed=10, ckpts=("last", "best"))
    ratio = stats.nb_ratio(split_frames())
    table = checkpoint_table(long, predictions_for(long), LABELS, bootstrap=20, ratio=ratio)
    assert set(table["metric"]) == set(checkpoint_metrics(LABELS))
    for r in table.itertuples(index=False):
        last = column(long, r.synth, r.metric, "last")
        best = column(long, r.synth, r.metric, "best")
        assert r.splits == K
        assert (r.last_mean, r.best_mean) == pytest.approx((last.mean(), best.mean()))
        assert (r.diff, r.diff_low, r.diff_high, r.p) == pytest.approx(ref_paired(last, best))
        assert r.resamples + r.skipped == 20
    plain = checkpoint_table(long, predictions_for(long), LABELS, bootstrap=0, ratio=0.0)
    for r in plain.itertuples(index=False):
        last = column(long, r.synth, r.metric, "last")
        best = column(long, r.synth, r.metric, "best")
        assert r.p == pytest.approx(sps.ttest_rel(best, last).pvalue)
        assert pd.isna(r.boot_low) and r.resamples == 0


def test_checkpoint_table_constant_difference():
    long = metrics_long(seed=11, synths=(0,), ckpts=("last", "best"))
    last = np.array([0.5, 0.625, 0.75, 0.5625, 0.6875])
    long.loc[long["ckpt"] == "last", "accuracy"] = last
    long.loc[long["ckpt"] == "best", "accuracy"] = last + 0.25
    table = checkpoint_table(long, predictions_for(long), LABELS, bootstrap=0, ratio=0.25)
    r = table.set_index("metric").loc["accuracy"]
    assert r["diff"] == pytest.approx(0.25) and pd.isna(r["p"]) and pd.isna(r["diff_low"])
    assert r["note"] == stats.NO_VARIANCE
    row = [line for line in checkpoint_markdown(table).split("\n") if "| accuracy |" in line][0]
    assert "p=" not in row and "+0.250 (no variance over splits)" in row


# --------------------------------------------------------------------------- metric definitions


def test_perfect_classifier_with_an_absent_class_scores_1():
    """Issue 12's example: 6 labels, class 0 never in the test set, every image right. The old
    code averaged the absent class in as 0: macro F1 5/6 = 0.833."""
    labels = [f"c{i}" for i in range(6)]
    y = np.repeat(np.arange(1, 6), 7)
    prob = np.full((len(y), 6), 0.02)
    prob[np.arange(len(y)), y] = 0.9
    result = compute_metrics(y, prob, labels)
    assert result["macro"]["f1"] == 1.0 and result["macro"]["f1"] != pytest.approx(5 / 6)
    assert result["macro"]["precision"] == 1.0 and result["macro"]["recall"] == 1.0
    assert result["auc"] == 1.0 and result["pr_auc"] == 1.0
    assert result["accuracy"] == 1.0 and result["balanced_accuracy"] == 1.0
    assert result["per_class"]["c0"]["support"] == 0
    fast = stats.fast_metrics(y, prob, 6)
    for m in ("macro_precision", "macro_recall", "macro_f1", "auc", "pr_auc"):
        assert fast[m] == 1.0, m


def test_undefined_precision_is_nan_never_0(tmp_path):
    """A class never predicted has no precision: None in the JSON, NaN in the table, left out
    of the macro precision, "–" on the page; its recall and F1 (0) still count."""
    labels = ["a", "b", "c"]
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 1])  # c never predicted
    prob = np.eye(3)[pred] * 0.8 + 0.2 / 3
    result = compute_metrics(y, prob, labels)
    assert result["per_class"]["c"]["precision"] is None
    assert result["per_class"]["c"]["recall"] == 0 and result["per_class"]["c"]["f1"] == 0
    assert result["macro"]["precision"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert result["macro"]["precision"] != pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert result["macro"]["recall"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert result["macro"]["f1"] == pytest.approx(np.mean(skm.f1_score(y, pred, average=None)))
    assert '"precision": null' in json.dumps(result)
    assert stats.fast_metrics(y, prob, 3)["macro_precision"] == pytest.approx(0.5)
    # every split: "normal" never predicted -> NaN over splits -> "–" on the page
    grid = []
    for s in range(3):
        yb = np.array([0, 0, 1, 1, 1, 0, 1])
        pb = np.tile([0.3, 0.7], (len(yb), 1))
        r = compute_metrics(yb, pb, LABELS) | {"epoch": 1}
        path = tmp_path / f"{s}.json"
        path.write_text(json.dumps(r))
        grid.append(dict(arch="a", synth=0, split=s, ckpt="best", path=str(path)))
    long = collect(grid)
    assert long["normal_precision"].isna().all()
    table = scenario_table(long, LABELS)
    row = table.set_index("metric").loc["normal_precision"]
    assert pd.isna(row["mean"]) and row["splits"] == 0
    text = scenario_markdown(table, ["accuracy", "normal_precision"])
    last_row = text.strip().split("\n")[2]
    assert last_row.rstrip(" |").endswith(DASH) and DASH == "–"
    assert "nan" not in text.lower() and "0.000 ±" not in last_row.split("|")[-2]


def test_positive_class_0():
    """labels.positive = the first label: sensitivity is class 0's recall, AUC/PR-AUC score
    prob[:, 0] against y == 0. Constructed so that PR-AUC depends on the choice."""
    labels = ["malignant", "benign"]
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    p0 = np.array([0.9, 0.4, 0.35, 0.8, 0.3, 0.2, 0.1, 0.6, 0.05, 0.45])
    prob = np.stack([p0, 1 - p0], 1)
    pred = prob.argmax(1)
    r0 = compute_metrics(y, prob, labels, positive=0)
    r1 = compute_metrics(y, prob, labels, positive=1)
    assert r0["positive"] == "malignant" and r1["positive"] == "benign"
    assert r0["sensitivity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert r0["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=1))
    assert r0["sensitivity"] == r1["specificity"] and r0["specificity"] == r1["sensitivity"]
    assert r0["sensitivity"] != r0["specificity"]
    assert r0["auc"] == pytest.approx(skm.roc_auc_score(y == 0, prob[:, 0]))
    assert r0["pr_auc"] == pytest.approx(skm.average_precision_score(y == 0, prob[:, 0]))
    assert r1["pr_auc"] == pytest.approx(skm.average_precision_score(y == 1, prob[:, 1]))
    assert abs(r0["pr_auc"] - r1["pr_auc"]) > 0.05
    assert compute_metrics(y, prob, labels)["pr_auc"] == r1["pr_auc"]  # default: index 1
    fast = stats.fast_metrics(y, prob, 2, positive=0)
    for m in stats.BOOTSTRAP_METRICS:
        expected = r0.get(m) if not m.startswith("macro_") else r0["macro"][m[6:]]
        assert fast[m] == pytest.approx(expected), m
    assert positive_index(labels, "malignant") == 0 and positive_index(labels, None) is None
    assert positive_index(["a", "b", "c"], "a") is None


def classes_seen(monkeypatch, module, name: str) -> list:
    """Wrap module.name (a metrics function taking y first) to record the classes of every call."""
    seen, real = [], getattr(module, name)

    def spy(yy, *args, **kwargs):
        seen.append(np.unique(yy))
        return real(yy, *args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen


def test_bootstrap_ci_skips_and_counts_resamples_without_a_class(monkeypatch):
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    y = np.array([0] * 20 + [1] * 18 + [2] * 2)  # c is rare: ~13% of draws lack it
    prob = rng.dirichlet([1, 1, 1], len(y))
    seen = classes_seen(monkeypatch, evaluate, "compute_metrics")
    ci = bootstrap_ci(y, prob, labels, 200, seed=1)
    assert ci["skipped"] > 0
    assert len(seen) == 200 - ci["skipped"]
    assert all(list(classes) == [0, 1, 2] for classes in seen)
    for m in evaluate.CI_METRICS:
        assert ci[m]["resamples"] == 200 - ci["skipped"]
        assert ci[m]["low"] <= ci[m]["high"]


def test_paired_bootstrap_skips_and_counts_resamples_without_a_class(monkeypatch):
    rng = np.random.default_rng(1)
    pairs = []
    for s in range(3):
        y = np.array([0] * 15 + [1] * 13 + [2] * 2)
        pairs.append((y, rng.dirichlet([1, 1, 1], len(y)), rng.dirichlet([1, 1, 1], len(y))))
    seen = classes_seen(monkeypatch, stats, "fast_metrics")
    out = stats.paired_bootstrap(pairs, 3, 100, seed=2)
    assert out["skipped"] > 0
    assert len(seen) == 2 * len(pairs) * (100 - out["skipped"])  # a and b, every split
    assert all(list(classes) == [0, 1, 2] for classes in seen)
    assert out["accuracy"]["resamples"] == 100 - out["skipped"]

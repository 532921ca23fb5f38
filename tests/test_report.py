"""Report tables and statistics: collect eval JSONs, the scenario and checkpoint tables (means,
corrected t CIs, paired tests, Holm, paired bootstrap), published values, the written report.
tests/test_statistics.py recomputes the intervals and p-values independently."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from scipy import stats as sps

from mammosynth.classify.evaluate import compute_metrics
from mammosynth.report import stats
from mammosynth.report.published import PUBLISHED
from mammosynth.report.tables import (CHECKPOINT_COLUMNS, DASH, PAIRED, QUALITY_COLUMNS,
                                      SCENARIO_COLUMNS, checkpoint_markdown, checkpoint_metrics,
                                      checkpoint_table, collect, data_table, flatten,
                                      from_predictions, scenario_markdown, scenario_metrics,
                                      scenario_table)

LABELS = ["normal", "abnormal"]
ARCHS = ["resnet10t", "mobilenetv3_small_050"]
SYNTH = [0, 100]
SPLITS = [0, 1, 2]
CKPTS = ["last", "best"]


def fake_eval(rng, arch, epoch, labels=LABELS, n=20, one_class=False):
    """An eval JSON as evaluate() + the evaluate script write it, from random predictions."""
    y = np.zeros(n, dtype=int) if one_class else rng.integers(0, len(labels), n)
    if not one_class:
        y[: len(labels)] = np.arange(len(labels))  # every class present
    logits = rng.normal(size=(n, len(labels))) + np.eye(len(labels))[y]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    result = compute_metrics(y, prob, labels)
    result.update({"arch": arch, "epoch": epoch, "labels": labels})
    return result


@pytest.fixture
def evals(tmp_path):
    """2 archs x 2 scenarios x 3 splits x 2 checkpoints of eval JSON files, as the GRID lists them."""
    rng = np.random.default_rng(0)
    grid = []
    for arch in ARCHS:
        for n in SYNTH:
            for s in SPLITS:
                for ckpt in CKPTS:
                    result = fake_eval(rng, arch, epoch=int(rng.integers(1, 10)))
                    result["checkpoint"] = ckpt
                    path = tmp_path / "results" / arch / f"synth{n}" / f"split{s}" / f"eval_{ckpt}.json"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(result, indent=2))
                    grid.append(dict(arch=arch, synth=n, split=s, ckpt=ckpt, path=str(path)))
    return grid


def test_flatten():
    result = fake_eval(np.random.default_rng(3), "a", epoch=4)
    row = flatten(result)
    assert row["accuracy"] == result["accuracy"] and row["auc"] == result["auc"]
    assert row["macro_f1"] == result["macro"]["f1"]
    assert row["abnormal_recall"] == result["per_class"]["abnormal"]["recall"]
    assert row["normal_support"] == result["per_class"]["normal"]["support"]
    assert row["sensitivity"] == result["sensitivity"]
    assert row["epoch"] == 4 and row["n_test"] == 20


def test_collect_one_row_per_file(evals):
    long = collect(evals)
    assert len(long) == len(evals) == 24
    assert not long.duplicated(["arch", "synth", "split", "ckpt"]).any()
    assert list(long.columns[:4]) == ["arch", "synth", "split", "ckpt"]
    for m in scenario_metrics(LABELS):
        assert m in long.columns
    # sorted by arch, synth, ckpt, split
    keys = list(zip(long["arch"], long["synth"], long["ckpt"], long["split"]))
    assert keys == sorted(keys)
    for e in evals:
        with open(e["path"]) as f:
            result = json.load(f)
        row = long[(long["arch"] == e["arch"]) & (long["synth"] == e["synth"])
                   & (long["split"] == e["split"]) & (long["ckpt"] == e["ckpt"])]
        assert len(row) == 1
        row = row.iloc[0]
        assert row["accuracy"] == result["accuracy"]
        assert row["macro_precision"] == result["macro"]["precision"]
        assert row["epoch"] == result["epoch"] and row["n_test"] == result["n"]


def _metric(result, m):
    if m.startswith("macro_"):
        return result["macro"][m[len("macro_"):]]
    label, _, name = m.rpartition("_")
    if label in result.get("per_class", {}):
        return result["per_class"][label][name]
    return result.get(m)


def test_scenario_table_recomputed_from_the_json_files(evals):
    table = scenario_table(collect(evals), LABELS)
    assert list(table.columns) == SCENARIO_COLUMNS
    metrics = scenario_metrics(LABELS)
    assert len(table) == len(ARCHS) * len(SYNTH) * len(CKPTS) * len(metrics)
    for r in table.itertuples(index=False):
        group = {e["split"]: json.load(open(e["path"])) for e in evals
                 if (e["arch"], e["synth"], e["ckpt"]) == (r.arch, r.synth, r.ckpt)}
        values = np.array([_metric(group[s], r.metric) for s in SPLITS], dtype=float)
        assert r.splits == 3
        assert r.mean == pytest.approx(values.mean()) and r.sd == pytest.approx(values.std(ddof=1))
        half = sps.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
        assert r.ci_low == pytest.approx(max(0, values.mean() - half))
        assert r.ci_high == pytest.approx(min(1, values.mean() + half))
        if r.synth == 0:
            assert pd.isna(r.diff_vs_0)
            continue
        base = {e["split"]: json.load(open(e["path"])) for e in evals
                if (e["arch"], e["synth"], e["ckpt"]) == (r.arch, 0, r.ckpt)}
        d = values - np.array([_metric(base[s], r.metric) for s in SPLITS], dtype=float)
        assert r.diff_vs_0 == pytest.approx(d.mean())
        assert r.test == PAIRED
        if np.ptp(d) == 0:  # e.g. balanced accuracy = macro recall on some split pair
            assert pd.isna(r.p) and r.note == stats.NO_VARIANCE
            continue
        res = sps.ttest_rel(values, values - d)  # ratio 0: the plain paired t
        assert r.p == pytest.approx(res.pvalue)
        ci = res.confidence_interval(0.95)
        assert (r.diff_low, r.diff_high) == pytest.approx((max(-1, ci.low), min(1, ci.high)))
    # Holm within each comparison, the primary (default balanced_accuracy) unadjusted
    for _, family in table[table["synth"] != 0].groupby(["arch", "synth", "ckpt"]):
        family = family.set_index("metric")
        assert family.loc["balanced_accuracy", "p_holm"] == family.loc["balanced_accuracy", "p"]
        others = family.drop(index=["balanced_accuracy", "macro_recall", "sensitivity",
                                    "specificity"])  # the same as another metric by definition
        assert list(others["p_holm"]) == pytest.approx(list(stats.holm(others["p"])))
        assert family.loc["sensitivity", "p_holm"] == family.loc["abnormal_recall", "p_holm"]
        assert (others["p_holm"].dropna() >= others["p"].dropna()).all()


def test_scenario_table_skips_undefined_auc(tmp_path):
    """A split whose test set has one class has no AUC: the mean is over the other splits."""
    rng = np.random.default_rng(1)
    grid = []
    for s in SPLITS:
        result = fake_eval(rng, "a", epoch=1, one_class=(s == 0))
        path = tmp_path / f"{s}.json"
        path.write_text(json.dumps(result))
        grid.append(dict(arch="a", synth=0, split=s, ckpt="best", path=str(path)))
    long = collect(grid)
    assert pd.isna(long.loc[long["split"] == 0, "auc"]).all()
    table = scenario_table(long, LABELS).set_index("metric")
    aucs = long.loc[long["split"] != 0, "auc"].to_numpy(dtype=float)
    assert table.loc["auc", "mean"] == pytest.approx(aucs.mean())
    assert table.loc["auc", "splits"] == 2
    text = scenario_markdown(table.reset_index(), ["accuracy", "auc"])
    assert "nan" not in text.lower() and "(2 of 3 splits)" in text


def test_markdown_shows_undefined_as_a_dash(evals):
    """An undefined value (NaN in the CSV files) is "–" on the page, never "nan" or "n/a"."""
    table = scenario_table(collect(evals), LABELS)
    table.loc[table["metric"] == "auc", ["mean", "sd", "ci_low", "ci_high"]] = np.nan
    table.loc[table["metric"] == "auc", ["diff_vs_0", "p", "p_holm"]] = np.nan
    text = scenario_markdown(table, ["accuracy", "auc"])
    for line in text.strip().split("\n"):
        if line.startswith("| resnet10t") or line.startswith("| mobilenet"):
            assert line.rstrip(" |").endswith(DASH), line
    assert "n/a" not in text and "nan" not in text.lower()


def test_scenario_markdown_shape(evals):
    table = scenario_table(collect(evals), LABELS)
    metrics = ["accuracy", "normal_recall", "auc"]
    text = scenario_markdown(table, metrics)
    lines = text.strip().split("\n")
    assert lines[0] == "| arch | synthetic n | weights | splits | accuracy | normal_recall | auc |"
    rows = [line for line in lines[2:2 + len(ARCHS) * len(SYNTH) * len(CKPTS)]]
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for cell in cells[4:]:
            assert re.fullmatch(r"\d\.\d{3} ± \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", cell)
    assert "Change vs scenario 0, paired by split" in text and PAIRED in text
    changes = [line for line in text.split("Change vs scenario 0")[1].split("\n")
               if line.startswith("| ")][1:]  # the change table's rows, below its header
    assert len(changes) == len(ARCHS) * (len(SYNTH) - 1) * len(CKPTS)
    for line in changes:
        for cell in [c.strip() for c in line.strip("|").split("|")][3:]:
            # +d [low, high] p=.. (Holm ..): no primary among these metrics, so Holm on each
            assert re.fullmatch(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\] "
                                r"p=\S+ \(Holm \S+\)", cell), cell
    marked = scenario_markdown(table, ["balanced_accuracy", "accuracy"], "balanced_accuracy")
    assert "balanced_accuracy * |" in marked
    row = [line for line in marked.split("Change vs scenario 0")[1].split("\n")
           if line.startswith("| ")][1]
    primary_cell = [c.strip() for c in row.strip("|").split("|")][3]
    assert "Holm" not in primary_cell and "p=" in primary_cell


def test_scenario_table_shows_published_values(evals):
    long = collect(evals)
    long["arch"] = long["arch"].replace({"resnet10t": "tf_efficientnetv2_l"})
    long["synth"] = long["synth"].replace({100: 500})
    table = scenario_table(long, LABELS, PUBLISHED["sutjiadi2025"]).set_index(
        ["arch", "synth", "ckpt", "metric"])
    assert table.loc[("tf_efficientnetv2_l", 0, "last", "accuracy"), "published"] == 0.84
    assert table.loc[("tf_efficientnetv2_l", 0, "last", "normal_recall"), "published"] == 0.31
    assert table.loc[("tf_efficientnetv2_l", 500, "last", "abnormal_f1"), "published"] == 0.95
    assert pd.isna(table.loc[("tf_efficientnetv2_l", 0, "best", "accuracy"), "published"])
    assert pd.isna(table.loc[("mobilenetv3_small_050", 0, "last", "accuracy"), "published"])
    assert "(paper 0.84)" in scenario_markdown(table.reset_index(), ["accuracy"])


def test_published_values_are_the_papers_tables():
    s = PUBLISHED["sutjiadi2025"]["values"]
    assert sorted(n for _, n, _ in s) == [0, 100, 250, 500]
    # DESIGN.md: scenario 1 is a test set of 13 normal + 69 abnormal images
    assert s[("tf_efficientnetv2_l", 0, "last")]["normal_precision"] == 0.50
    b = PUBLISHED["best_weights"]["values"]
    assert len(b) == 12
    assert b[("inception_v3", 0, "last")]["accuracy"] == pytest.approx(0.7912)
    assert b[("inception_v3", 0, "best")]["accuracy"] == pytest.approx(0.9441)
    assert b[("nasnetamobile", 0, "best")]["pr_auc"] == 0.98


# --------------------------------------------------------------------------- statistics


def test_mean_ci_matches_scipy():
    v = [0.7, 0.75, 0.72, 0.8, 0.77]
    ci = stats.mean_ci(v)
    low, high = sps.t.interval(0.95, 4, loc=np.mean(v), scale=sps.sem(v))
    assert (ci["low"], ci["high"]) == (pytest.approx(low), pytest.approx(high))
    assert ci["note"] == ""
    one = stats.mean_ci([0.5])
    assert np.isnan(one["sd"]) and np.isnan(one["low"]) and one["note"] == stats.TOO_FEW
    assert stats.mean_ci([0.0, 1.0])["low"] == 0.0  # clipped to the metric's range
    assert stats.mean_ci([0.8, None, float("nan")])["n"] == 1
    flat = stats.mean_ci([0.9, 0.9, 0.9], 0.25)
    assert flat["mean"] == 0.9 and np.isnan(flat["low"]) and flat["note"] == stats.NO_VARIANCE
    # the correction widens the interval by sqrt(1 + k ratio)
    wide = stats.mean_ci(v, 0.2)
    assert wide["high"] - wide["low"] == pytest.approx((high - low) * np.sqrt(1 + 5 * 0.2))


def test_paired_matches_scipy_and_never_gives_p_0():
    a, b = [0.70, 0.72, 0.75, 0.71, 0.74], [0.75, 0.74, 0.80, 0.72, 0.79]
    p = stats.paired(a, b)
    assert p["diff"] == pytest.approx(np.mean(np.subtract(b, a)))
    assert p["p"] == pytest.approx(sps.ttest_rel(b, a).pvalue) and p["note"] == ""
    assert stats.paired(a, b, 0.25)["p"] > p["p"]
    assert set(p) == {"diff", "diff_low", "diff_high", "p", "n", "note"}
    same = stats.paired(a, a)  # no variance: no p at all (the old code said 1.0)
    assert same["diff"] == 0 and np.isnan(same["p"]) and same["note"] == stats.NO_VARIANCE
    assert not hasattr(stats, "min_wilcoxon_p")


@pytest.mark.parametrize("n_classes,positive", [(2, None), (2, 0), (2, 1), (4, None)])
def test_fast_metrics_equal_compute_metrics(n_classes, positive):
    rng = np.random.default_rng(n_classes)
    labels = [f"c{i}" for i in range(n_classes)]
    for trial in range(30):
        n = int(rng.integers(5, 40))
        y = rng.integers(0, n_classes - (trial % 2), n)  # odd trials: one class absent
        prob = rng.dirichlet(np.ones(n_classes), n)
        if trial % 3 == 0:  # some class never predicted: undefined precision
            prob[:, -1] = 0
        full = compute_metrics(y, prob, labels, positive=positive)
        fast = stats.fast_metrics(y, prob, n_classes, positive)
        for m in stats.BOOTSTRAP_METRICS:
            expected = _metric(full, m)
            if expected is None:
                assert fast[m] is None
            else:
                assert fast[m] == pytest.approx(expected), (m, trial)


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(3):
        y = rng.integers(0, 2, 30)
        a = rng.dirichlet([1, 1], 30)
        b = np.where(y[:, None] == 1, [[0.2, 0.8]], [[0.8, 0.2]])  # b is always right
        pairs.append((y, a, b))
    ci = stats.paired_bootstrap(pairs, 2, 200, seed=1)
    assert ci["accuracy"]["low"] > 0 and ci["skipped"] == 0  # 30 images: both classes drawn
    assert ci["accuracy"]["resamples"] == 200
    assert set(ci) == set(stats.BOOTSTRAP_METRICS) | {"skipped"}
    assert ci == stats.paired_bootstrap(pairs, 2, 200, seed=1)  # seeded
    same = stats.paired_bootstrap([(y, a, a) for y, a, _ in pairs], 2, 50)
    assert same["accuracy"] == {"low": 0.0, "high": 0.0, "resamples": 50}


def _predictions(tmp_path, evals_grid):
    """predictions_{ckpt}.csv frames for the fake evals: same test images for last and best."""
    rng = np.random.default_rng(5)
    out = {}
    for g in evals_grid:
        key = (g["arch"], g["synth"], g["split"])
        y = np.arange(20) % 2  # both classes, so no resample lacks one
        prob = rng.dirichlet([1, 1], 20)
        out[key + (g["ckpt"],)] = pd.DataFrame({"image_id": [f"i{k}" for k in range(20)],
                                                "y": y, "prob_normal": prob[:, 0],
                                                "prob_abnormal": prob[:, 1]})
    return out


def test_checkpoint_metrics():
    assert checkpoint_metrics(LABELS) == ["accuracy", "balanced_accuracy", "macro_precision",
                                          "macro_recall", "macro_f1", "auc", "pr_auc",
                                          "sensitivity", "specificity"]
    assert "sensitivity" not in checkpoint_metrics(["a", "b", "c"])
    assert set(checkpoint_metrics(LABELS)) <= set(scenario_metrics(LABELS))


def test_checkpoint_table(tmp_path, evals):
    long = collect(evals)
    preds = _predictions(tmp_path, evals)
    table = checkpoint_table(long, preds, LABELS, bootstrap=50)
    assert list(table.columns) == CHECKPOINT_COLUMNS
    assert len(table) == len(ARCHS) * len(SYNTH) * len(checkpoint_metrics(LABELS))
    for r in table.itertuples(index=False):
        rows = long[(long["arch"] == r.arch) & (long["synth"] == r.synth)]
        last = rows[rows["ckpt"] == "last"].set_index("split")[r.metric].astype(float)
        best = rows[rows["ckpt"] == "best"].set_index("split")[r.metric].astype(float)
        assert r.last_mean == pytest.approx(last.mean()) and r.best_mean == pytest.approx(best.mean())
        assert r.diff == pytest.approx((best - last).mean())
        res = sps.ttest_rel(best, last)  # ratio 0: the plain paired t
        assert r.p == pytest.approx(res.pvalue)
        ci = res.confidence_interval(0.95)
        assert (r.diff_low, r.diff_high) == pytest.approx((max(-1, ci.low), min(1, ci.high)))
        assert r.resamples == 50 and r.skipped == 0 and r.boot_low <= r.boot_high
        if r.metric == "balanced_accuracy":
            assert r.p_holm == r.p
        else:
            assert r.p_holm >= r.p
    text = checkpoint_markdown(table, "balanced_accuracy")
    assert text.count("\n") == len(table) + 2
    assert "| balanced_accuracy * |" in text and "(Holm " in text


def test_checkpoint_table_positive_class(tmp_path, evals):
    """labels.positive reaches the bootstrap: sensitivity's interval with positive 0 is the
    specificity's with positive 1."""
    long = collect(evals)
    preds = _predictions(tmp_path, evals)
    one = checkpoint_table(long, preds, LABELS, bootstrap=30, positive=1).set_index(
        ["arch", "synth", "metric"])
    zero = checkpoint_table(long, preds, LABELS, bootstrap=30, positive=0).set_index(
        ["arch", "synth", "metric"])
    for arch in ARCHS:
        for n in SYNTH:
            assert zero.loc[(arch, n, "sensitivity"), "boot_low"] == pytest.approx(
                one.loc[(arch, n, "specificity"), "boot_low"])
            assert zero.loc[(arch, n, "pr_auc"), "boot_low"] != pytest.approx(
                one.loc[(arch, n, "pr_auc"), "boot_low"])


def test_checkpoint_table_refuses_mismatched_predictions(evals):
    from mammosynth.errors import UserError

    long = collect(evals)
    preds = _predictions(None, evals)
    key = (ARCHS[0], 0, 0, "best")
    preds[key] = preds[key].iloc[::-1]
    with pytest.raises(UserError, match="different test images"):
        checkpoint_table(long, preds, LABELS, bootstrap=5)


def test_from_predictions_uses_the_real_test_images_only(evals):
    """Protocol paper's test sets hold synthetic images: the real-test table recomputes every
    row from the predictions whose `synthetic` column is false."""
    long = collect(evals)
    preds = _predictions(None, evals)
    rng = np.random.default_rng(9)
    for key, p in preds.items():
        p["synthetic"] = rng.random(len(p)) < 0.3
        p.loc[:3, "synthetic"] = [False, False, True, True]  # both classes real and synthetic
        p["synthetic"] = p["synthetic"].map({True: "True", False: "False"})  # as read from CSV
    grid = [{k: e[k] for k in ("arch", "synth", "split", "ckpt")} for e in evals]
    real = from_predictions(grid, preds, long, LABELS, positive=0)
    assert len(real) == len(long)
    assert list(real[["arch", "synth", "split", "ckpt"]].itertuples(index=False)) == \
        list(long[["arch", "synth", "split", "ckpt"]].itertuples(index=False))
    for r in real.itertuples(index=False):
        p = preds[(r.arch, r.synth, r.split, r.ckpt)]
        p = p[p["synthetic"] == "False"]
        expected = compute_metrics(p["y"].to_numpy(), p[["prob_normal", "prob_abnormal"]]
                                   .to_numpy(), LABELS, positive=0)
        assert r.n_test == len(p) < 20
        assert r.accuracy == pytest.approx(expected["accuracy"])
        assert r.pr_auc == pytest.approx(expected["pr_auc"])
        assert r.sensitivity == pytest.approx(expected["sensitivity"])
        epoch = long[(long["arch"] == r.arch) & (long["synth"] == r.synth)
                     & (long["split"] == r.split) & (long["ckpt"] == r.ckpt)]["epoch"].item()
        assert r.epoch == epoch


def manifest_and_splits():
    rows = []
    for i in range(10):
        rows.append({"image_id": f"i{i}", "patient_id": f"p{i}", "label": LABELS[i % 2],
                     "status": "ok", "reason": "", "source": f"src/i{i}.dcm",
                     "image_path": f"png/i{i}.png"})
    rows += [{"image_id": "bad1", "patient_id": "p1", "label": "", "status": "rejected",
              "reason": "file is empty (0 bytes)", "source": "src/bad1.dcm", "image_path": ""},
             {"image_id": "bad2", "patient_id": "p2", "label": "normal", "status": "rejected",
              "reason": "not a mammogram", "source": "src/bad2.dcm", "image_path": ""}]
    manifest = pd.DataFrame(rows)
    subsets = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    splits = {}
    for s in (0, 1):
        order = np.random.default_rng(s).permutation(10)
        splits[s] = pd.DataFrame({"image_id": [f"i{k}" for k in order], "subset": subsets})
    return manifest, splits


def test_data_table_counts():
    manifest, splits = manifest_and_splits()
    data = data_table(manifest, splits)
    assert list(data.columns) == ["split", "subset", "label", "images"]
    assert data["images"].sum() == 20
    labels = manifest.set_index("image_id")["label"]
    for s, split in splits.items():
        for subset in ("train", "val", "test"):
            ids = split.loc[split["subset"] == subset, "image_id"]
            for label in LABELS:
                expected = int((labels[ids] == label).sum())
                got = data[(data["split"] == s) & (data["subset"] == subset)
                           & (data["label"] == label)]["images"]
                assert int(got.sum()) == expected, (s, subset, label)


def test_quality_table_from_audit_json(tmp_path):
    from mammosynth.report.inputs import read_quality
    from mammosynth.report.tables import quality_table

    q = {"split": 0, "label": "normal", "n_synthetic": 4, "n_real": 9,
         "memorization": {"near_copies": 1, "nn_ncc": {"median": 0.5, "max": 0.97},
                          "real_nn_ncc": {"median": 0.6}},
         "diversity": {"ms_ssim_synthetic": 0.3, "ms_ssim_real": 0.2},
         "intensity": {"wasserstein": 0.01}, "fid": {"computed": False}}
    path = tmp_path / "normal.json"
    path.write_text(json.dumps(q))
    table = quality_table(read_quality([{"split": "0", "label": "normal"}], [str(path)]))
    assert list(table.columns) == QUALITY_COLUMNS
    row = table.iloc[0]
    assert (row["near_copies"], row["nn_ncc_max"], row["real"]) == (1, 0.97, 9)
    assert pd.isna(row["fid"])

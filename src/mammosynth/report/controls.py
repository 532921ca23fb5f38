"""Is it the synthetic images? The control arms against synth{n}, and the real-data learning
curve (issue 13).

Every arm trains on one split's training images and is tested on that split's real test images:
- synth{n}: the split's real training images plus n synthetic images (synth0: real images only);
- dup{n}: plus n of its real training images again (count-matched per label): oversampling;
- aug{n}: the same draws as dup{n}, as augmented copies;
- synthonly{n}: the n synthetic images alone (trained on synthetic, tested on real);
- real{p}: a nested p percent of the real training images (the learning curve; 100 % is synth0).

All arms of one split share its test images, so two arms are compared paired by split with the
Nadeau-Bengio corrected t (report/stats.py: variance s^2 (1/k + n_test/n_train), k - 1 degrees of
freedom), and Holm's adjustment within each comparison over its metrics, the primary metric left
unadjusted (tables._holm).

Real equivalents (`real_equivalents`): how many real training images the real-data learning
curve needs to match synth{n}. The curve is the mean over splits of the metric at each measured
percent p (config real_fractions, plus 100 = synth0), made monotone non-decreasing by isotonic
regression (sklearn.isotonic.IsotonicRegression) and read between the measured fractions by
linear interpolation; it is inverted at synth{n}'s mean (the point estimate) and at the ends of
that mean's corrected 95% CI (the interval). Where the curve is flat at the value, the least
percent that reaches it is reported and the flat stretch noted. The assumption: between two
measured fractions the metric moves linearly, and more real images never hurt (the isotonic
step pools fractions where noise says otherwise). No extrapolation: a value above the curve at
100 % is "beyond the curve" (> 100 %: worth more than all the real images we have), one below its
smallest fraction "below the curve" (< that fraction).
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.isotonic import IsotonicRegression  # noqa: E402

from mammosynth.layout import ARMS  # noqa: E402
from mammosynth.report import stats  # noqa: E402
from mammosynth.report.figures import COLORS, _save  # noqa: E402
from mammosynth.report.tables import _holm, _p, _values, scenario_metrics  # noqa: E402

TITLE = "Is it the synthetic images?"
TABLES = ("controls.csv", "real_equivalents.csv")
FIGURE = "controls-all.png"
CONTROL_ARMS = tuple(a for a in ARMS if a != "synth")
ARM_ORDER = ("synth", "dup", "aug", "synthonly", "real")
ARM_WORDS = {"dup": "duplicated real images", "aug": "augmented copies of real images",
             "synthonly": "synthetic images alone"}
CONTROLS_COLUMNS = ["arch", "arm", "n", "ckpt", "metric", "splits", "mean", "sd", "ci_low",
                    "ci_high", "versus", "diff", "diff_low", "diff_high", "p", "p_holm", "note"]
EQUIVALENT_COLUMNS = ["arch", "n", "ckpt", "metric", "synth_mean", "percent", "percent_low",
                      "percent_high", "images", "images_low", "images_high", "status", "equivalent",
                      "interval", "note"]
EQUIVALENT_METRICS = ("balanced_accuracy", "macro_f1", "auc")
WITHIN, BEYOND, BELOW = "within the curve", "beyond the curve", "below the curve"
TOL = 1e-12


# --------------------------------------------------------------------------- helpers


def arms(long: pd.DataFrame) -> pd.DataFrame:
    """long with `arm` (str) and `n` (int) columns; a table of scenarios only (column `synth`,
    no `arm`) becomes arm synth, n = synth."""
    if "arm" not in long.columns:
        long = long.assign(arm="synth", n=long["synth"])
    return long.assign(arm=long["arm"].astype(str), n=long["n"].astype(int))


def _name(arm: str, n: int) -> str:
    return f"{arm}{int(n)}"


def _arm_key(key: tuple) -> tuple:
    arm, n = key
    return (ARM_ORDER.index(arm) if arm in ARM_ORDER else len(ARM_ORDER), arm, int(n))


def _best(frame: pd.DataFrame) -> str | None:
    """The checkpoint the page speaks of: best weights, else the first there is."""
    ckpts = sorted(frame["ckpt"].astype(str).unique()) if len(frame) else []
    return "best" if "best" in ckpts else (ckpts[0] if ckpts else None)


def _pretty(metric: str) -> str:
    return metric.replace("_", " ")


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format="%.3f", na_rep="–", border=0)


# --------------------------------------------------------------------------- table 1


def controls_table(long: pd.DataFrame, labels: list[str], *, ratio: float = 0.0,
                   primary: str = "balanced_accuracy",
                   positive: int | None = None) -> pd.DataFrame:
    """One row per arch x arm x n x ckpt x metric x comparison (results/report/controls.csv).

    mean, sd, ci_low, ci_high, splits: this arm's metric over splits (corrected t 95% CI,
    `ratio` = n_test / n_train). versus: the arm compared against - "synth0" for every arm but
    synth0 itself (its rows have versus "" and no difference); synth{n} also against dup{n} and
    aug{n} where those ran. diff = this arm - the other, paired by split (the same real test
    images), with its corrected t 95% CI, two-sided p, and p_holm: Holm-adjusted within the
    comparison (arch, arm, n, ckpt, versus) over its metrics, the `primary` metric unadjusted
    (tables._holm with stats.same_as). note: why a comparison has no interval or p."""
    long = arms(long)
    metrics = scenario_metrics(labels)
    aliases = stats.same_as(labels, positive)
    groups = {k: g for k, g in long.groupby(["arch", "arm", "n", "ckpt"], sort=False)}
    rows = []
    for arch, arm, n, ckpt in sorted(groups, key=lambda k: (str(k[0]), _arm_key(k[1:3]),
                                                            str(k[3]))):
        group = groups[(arch, arm, n, ckpt)]
        if arm == "synth" and n == 0:
            against = [""]
        else:
            against = ["synth0"] + ([_name(a, n) for a in ("dup", "aug")
                                     if (arch, a, n, ckpt) in groups] if arm == "synth" else [])
        summary = {}
        for metric in metrics:
            ci = stats.mean_ci(_values(group, metric), ratio)
            summary[metric] = {"arch": arch, "arm": arm, "n": int(n), "ckpt": ckpt,
                               "metric": metric, "splits": ci["n"], "mean": ci["mean"],
                               "sd": ci["sd"], "ci_low": ci["low"], "ci_high": ci["high"],
                               "note": ci["note"]}
        for versus in against:
            family = []
            other = both = None
            if versus:
                other_arm = versus.rstrip("0123456789")
                other = groups.get((arch, other_arm, int(versus[len(other_arm):]), ckpt))
            if other is not None:
                keep = ["split"] + [m for m in metrics if m in group and m in other]
                both = group[keep].merge(other[keep], on="split", suffixes=("", "_other"))
            for metric in metrics:
                row = dict(summary[metric], versus=versus, diff=math.nan, diff_low=math.nan,
                           diff_high=math.nan, p=math.nan, p_holm=math.nan)
                if other is not None:
                    if len(both):
                        p = stats.paired(_values(both, metric + "_other"),
                                         _values(both, metric), ratio)
                        row |= {"diff": p["diff"], "diff_low": p["diff_low"],
                                "diff_high": p["diff_high"], "p": p["p"], "note": p["note"]}
                    else:
                        row["note"] = "no split in common"
                elif versus:
                    row["note"] = f"{versus} did not run"
                family.append(row)
            if versus:
                _holm(family, primary, aliases)
            rows += family
    return pd.DataFrame(rows, columns=CONTROLS_COLUMNS)


# --------------------------------------------------------------------------- table 2


def _least(xs: np.ndarray, ys: np.ndarray, v: float) -> float:
    """The least x at which the piecewise linear non-decreasing curve (xs, ys) reaches v
    (ys[0] <= v <= ys[-1])."""
    if ys[0] >= v:
        return float(xs[0])
    for i in range(len(xs) - 1):
        if ys[i + 1] >= v:
            return float(xs[i] + (v - ys[i]) / (ys[i + 1] - ys[i]) * (xs[i + 1] - xs[i]))
    return float(xs[-1])


def _greatest(xs: np.ndarray, ys: np.ndarray, v: float) -> float:
    """The greatest x at which the curve is still at most v (the end of a flat stretch at v)."""
    if ys[-1] <= v:
        return float(xs[-1])
    for i in range(len(xs) - 2, -1, -1):
        if ys[i] <= v:
            return float(xs[i] + (v - ys[i]) / (ys[i + 1] - ys[i]) * (xs[i + 1] - xs[i]))
    return float(xs[0])


def invert(xs, ys, v: float) -> tuple[str, float, float, float]:
    """(status, percent, flat_from, flat_to) of value v on the monotone curve (xs, ys): the least
    percent at which the curve (linear between its points) reaches v and the stretch over which
    it stays at v (flat_from == flat_to unless the curve is flat there); NaN outside the curve
    (status BEYOND above its last value, BELOW under its first) or for a NaN v."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if math.isnan(v):
        return "", math.nan, math.nan, math.nan
    if v > ys[-1] + TOL:
        return BEYOND, math.nan, math.nan, math.nan
    if v < ys[0] - TOL:
        return BELOW, math.nan, math.nan, math.nan
    # a value within round-off of a point of the curve is that point's value
    close = np.abs(ys - v) <= TOL
    v = float(ys[close][0]) if close.any() else float(v)
    return WITHIN, _least(xs, ys, v), _least(xs, ys, v), _greatest(xs, ys, v)


def learning_curve(long: pd.DataFrame, arch: str, ckpt: str, metric: str):
    """(percents, raw means, isotonic fit) of one arch x ckpt x metric: real{p} and synth0 (100),
    each the mean over its splits; None with no real fraction, no synth0, or < 2 defined points."""
    long = arms(long)
    rows = long[(long["arch"] == arch) & (long["ckpt"] == ckpt)]
    points = {}
    for p, g in rows[rows["arm"] == "real"].groupby("n"):
        points[float(p)] = _values(g, metric).mean()
    base = rows[(rows["arm"] == "synth") & (rows["n"] == 0)]
    if not points or base.empty:
        return None
    points[100.0] = _values(base, metric).mean()
    xs = np.array(sorted(p for p, y in points.items() if not pd.isna(y)))
    if len(xs) < 2:
        return None
    ys = np.array([points[p] for p in xs])
    fit = IsotonicRegression(increasing=True).fit_transform(xs, ys)
    return xs, ys, fit


def _percent_text(status: str, percent: float, min_p: float) -> str:
    """A real equivalent as text: "70 %", "> 100 %" (beyond the curve), "< 25 %" (below)."""
    if status == BEYOND:
        return "> 100 %"
    if status == BELOW:
        return f"< {min_p:g} %"
    return "–" if pd.isna(percent) else f"{percent:.0f} %"


def real_equivalents(long: pd.DataFrame, labels: list[str], n_train: dict, *,
                     ratio: float = 0.0, primary: str = "balanced_accuracy",
                     metrics=None) -> pd.DataFrame:
    """Per arch x n (each synth n > 0) x ckpt x metric (`metrics`, default the primary plus
    balanced accuracy, macro F1 and AUC - the threshold-free or class-balanced ones): how many
    real training images the real-data learning curve needs to match synth{n}'s metric
    (results/report/real_equivalents.csv).

    The curve: the mean over splits of the metric at each real percent p (real{p}) and at 100
    (synth0), made monotone non-decreasing with isotonic regression, linear between the
    measured percents. percent: the least percent at which it reaches synth{n}'s mean;
    percent_low / percent_high: the same at the ends of that mean's corrected 95% CI
    (stats.mean_ci with `ratio`). images = percent x the mean of n_train ({split: real training
    images}, over the splits synth{n} ran on) / 100. status: "within the curve", "beyond the
    curve" (above its value at 100 %: no number, "> 100 %") or "below the curve" (under its
    smallest fraction: "< p %"). equivalent / interval: the estimate and its 95% CI as text
    ("70 %", "< 25 % to 88 %", "> 100 %"; open ends where a CI end leaves the curve, "no
    interval (...)" where the mean has none); note: a flat stretch of the curve at the value.
    Empty without a real fraction (or synth0)."""
    long = arms(long)
    wanted = [primary] + [m for m in (metrics or EQUIVALENT_METRICS) if m != primary]
    wanted = [m for m in wanted if m in long.columns]
    rows = []
    synth = long[(long["arm"] == "synth") & (long["n"] > 0)]
    for (arch, ckpt), g in synth.groupby(["arch", "ckpt"], sort=True):
        for metric in wanted:
            curve = learning_curve(long, arch, ckpt, metric)
            if curve is None:
                continue
            xs, _, fit = curve
            for n, gn in g.groupby("n", sort=True):
                ci = stats.mean_ci(_values(gn, metric), ratio)
                splits = [s for s in gn["split"] if s in n_train] or list(n_train)
                per = float(np.mean([n_train[s] for s in splits])) / 100 if splits else math.nan
                status, percent, flat_from, flat_to = invert(xs, fit, ci["mean"])
                ends = [invert(xs, fit, ci[k]) for k in ("low", "high")]
                if ci["note"]:
                    interval = f"no interval ({ci['note'].split(':')[0]})"
                else:
                    low, high = (_percent_text(*e[:2], xs[0]) for e in ends)
                    interval = low if low == high and low[:1] in "<>" else f"{low} to {high}"
                note = ""
                if status == WITHIN and flat_to - flat_from > 1e-9:
                    note = (f"the curve is flat from {flat_from:.0f} % to {flat_to:.0f} %: any "
                            "of these fractions matches (the least is given)")
                rows.append({"arch": arch, "n": int(n), "ckpt": ckpt, "metric": metric,
                             "synth_mean": ci["mean"], "percent": percent,
                             "percent_low": ends[0][1], "percent_high": ends[1][1],
                             "images": percent * per, "images_low": ends[0][1] * per,
                             "images_high": ends[1][1] * per, "status": status,
                             "equivalent": _percent_text(status, percent, xs[0]),
                             "interval": interval, "note": note})
    return pd.DataFrame(rows, columns=EQUIVALENT_COLUMNS)


# --------------------------------------------------------------------------- sentences


def _comparison(row, what: str) -> str:
    """'better than / worse than / not distinguishable from {what} (difference ...)' from the
    corrected CI of the difference; without an interval, the note says why."""
    if row is None or pd.isna(row["diff"]):
        return f"no comparison with {what} ({row['note'] if row is not None else 'missing'})"
    if isinstance(row["note"], str) and row["note"]:
        if row["note"] == stats.NO_VARIANCE:
            return (f"{row['diff']:+.3f} against {what} on every split (no variance over "
                    "splits, so no interval or p-value)")
        return f"{row['diff']:+.3f} against {what} ({row['note']})"
    if row["diff_low"] > 0:
        verdict = "better than"
    elif row["diff_high"] < 0:
        verdict = "worse than"
    else:
        verdict = "not distinguishable from"
    return (f"{verdict} {what} (difference {row['diff']:+.3f} "
            f"[{row['diff_low']:+.3f}, {row['diff_high']:+.3f}], p {_p(row['p'])})")


def _equivalent(row) -> str:
    """The real-equivalent clause of a sentence (a real_equivalents row)."""
    interval = str(row["interval"])
    ci = interval if interval.startswith("no interval") else f"95% CI {interval}"
    if row["status"] == BEYOND:
        return ("on the real-data learning curve its mean is above the curve's value with all "
                f"the real training images (> 100 %; {ci}): "
                + ("worth more than all the real images we have, " if interval == "> 100 %"
                   else "") + "no number without more real data")
    if row["status"] == BELOW:
        return ("on the real-data learning curve its mean is below the smallest fraction "
                f"measured ({row['equivalent']} of the real training images; {ci})")
    if row["status"] != WITHIN:
        return ""
    note = row["note"] if isinstance(row["note"], str) and row["note"] else ""
    details = ([] if pd.isna(row["images"]) else [f"≈ {row['images']:.0f} images"]) + [ci]
    if note:
        details.append(note.split(":")[0])
    fewer = (" - less than all the real images it trained with"
             if row["percent"] < 99.5 else "")
    return (f"on the real-data learning curve it matches about {row['percent']:.0f} % of the "
            f"real training images alone ({'; '.join(details)}){fewer}")


def sentences(controls: pd.DataFrame, equivalents: pd.DataFrame, primary: str) -> list[str]:
    """One plain sentence per arch x n (synth n > 0; best weights; the primary metric): synth{n}
    against scenario 0, the duplicated and augmented real images of the same n, the synthetic
    images alone, and its real-data equivalent where the learning curve exists. better than /
    worse than / not distinguishable from: whether the difference's corrected 95% CI excludes
    0 (above / below) or not."""
    out = []
    rows = controls[controls["metric"] == primary]
    ckpt = _best(rows)
    if ckpt is None:
        return out
    rows = rows[rows["ckpt"] == ckpt]
    index = {(r.arch, r.arm, int(r.n), r.versus): r._asdict()
             for r in rows.itertuples(index=False)}
    eq = {}
    if equivalents is not None and len(equivalents):
        e = equivalents[(equivalents["metric"] == primary) & (equivalents["ckpt"] == ckpt)]
        eq = {(r.arch, int(r.n)): r._asdict() for r in e.itertuples(index=False)}
    metric = _pretty(primary)
    weights = "best weights" if ckpt == "best" else f"{ckpt} weights"
    for (arch, arm, n, versus), row in sorted(index.items(),
                                              key=lambda kv: (str(kv[0][0]), kv[0][2])):
        if arm != "synth" or n == 0 or versus != "synth0":
            continue
        base = index.get((arch, "synth", 0, ""))
        if pd.isna(row["mean"]):
            out.append(f"{arch}, {n} synthetic images ({metric}, {weights}): {metric} is "
                       "undefined on every split.")
            continue
        head = (f"{arch}, {n} synthetic images ({metric}, {weights}): {row['mean']:.3f}"
                + (f" against {base['mean']:.3f} with the real images alone"
                   if base and not pd.isna(base["mean"]) else "")
                + "; " + _comparison(row, "scenario 0"))
        parts = [head]
        for other in ("dup", "aug"):
            if (arch, "synth", n, _name(other, n)) in index:
                parts.append(_comparison(index[(arch, "synth", n, _name(other, n))],
                                         f"{n} {ARM_WORDS[other]}"))
        if (arch, "synthonly", n, "synth0") in index:
            alone = index[(arch, "synthonly", n, "synth0")]
            parts.append(f"the {n} synthetic images alone score {alone['mean']:.3f}, "
                         + _comparison(alone, "scenario 0"))
        if (arch, n) in eq and eq[(arch, n)]["status"]:
            parts.append(_equivalent(eq[(arch, n)]))
        out.append("; ".join(parts) + ".")
    return out


# --------------------------------------------------------------------------- figure


def _ci(values, ratio: float) -> tuple[float, float, float]:
    ci = stats.mean_ci(values, ratio)
    low = ci["mean"] - ci["low"] if not pd.isna(ci["low"]) else 0.0
    high = ci["high"] - ci["mean"] if not pd.isna(ci["high"]) else 0.0
    return ci["mean"], low, high


def figure(long: pd.DataFrame, primary: str, out: Path, *, ratio: float = 0.0) -> Path:
    """Two panels per arch (rows), best weights (else the first checkpoint): left, the primary
    metric against the images added (n = 0: synth0, the start of the synth, dup and aug lines)
    with one line per arm and corrected t 95% CI error bars (`ratio` = n_test / n_train); right,
    the real-data learning curve (percent of the real training images, 100 = synth0) with its
    isotonic fit and a horizontal line at each synth{n}'s mean."""
    long = arms(long)
    ckpt = _best(long)
    rows = long[long["ckpt"] == ckpt]
    archs = sorted(rows["arch"].unique())
    fig, axes = plt.subplots(max(1, len(archs)), 2, figsize=(10, 3.6 * max(1, len(archs))),
                             squeeze=False)
    name = _pretty(primary)
    for (left, right), arch in zip(axes, archs):
        a = rows[rows["arch"] == arch]
        base = a[(a["arm"] == "synth") & (a["n"] == 0)]
        ns = set()
        for i, arm in enumerate(("synth", "dup", "aug", "synthonly")):
            points = {int(n): g for n, g in a[a["arm"] == arm].groupby("n")}
            if arm == "synth" and not [n for n in points if n > 0]:
                continue
            if arm in ("dup", "aug") and points and len(base) and 0 not in points:
                points[0] = base  # nothing added: the real images alone
            if not points:
                continue
            xs = sorted(points)
            ns |= set(xs)
            stats_ = [_ci(_values(points[n], primary), ratio) for n in xs]
            dodge = (i - 1.5) * 0.012 * max(1, a["n"][a["arm"] != "real"].max())
            left.errorbar([x + dodge for x in xs], [s[0] for s in stats_],
                          yerr=np.array([[s[1] for s in stats_], [s[2] for s in stats_]]),
                          marker="o", capsize=3, color=COLORS[i], label=arm,
                          ls=":" if arm == "synthonly" else "-")
        left.set(title=f"{arch}: {name} ({ckpt} weights)", xlabel="images added (n)",
                 ylabel=name)
        if ns:
            left.set_xticks(sorted(ns))
        left.grid(alpha=0.3)
        if left.has_data():
            left.legend(fontsize=7)
        curve = learning_curve(long, arch, ckpt, primary)
        real = {int(p): g for p, g in a[a["arm"] == "real"].groupby("n")}
        if len(base):
            real[100] = base
        if real:
            xs = sorted(real)
            stats_ = [_ci(_values(real[p], primary), ratio) for p in xs]
            right.errorbar(xs, [s[0] for s in stats_],
                           yerr=np.array([[s[1] for s in stats_], [s[2] for s in stats_]]),
                           marker="o", capsize=3, color="black", label="real images only")
            right.set_xticks(xs)
        if curve is not None:
            right.plot(curve[0], curve[2], color="grey", lw=1, ls="--", label="monotone fit")
        synth = a[(a["arm"] == "synth") & (a["n"] > 0)]
        for j, (n, g) in enumerate(synth.groupby("n", sort=True)):
            mean = _values(g, primary).mean()
            if not pd.isna(mean):
                right.axhline(mean, color=COLORS[(j + 4) % 10], ls="-.", lw=1,
                              label=f"synth{int(n)}")
        if not real:
            right.text(0.5, 0.5, "no real-data learning curve", ha="center", va="center",
                       transform=right.transAxes)
        right.set(title=f"{arch}: real-data learning curve",
                  xlabel="percent of the real training images", ylabel=name)
        right.grid(alpha=0.3)
        if right.get_legend_handles_labels()[0]:
            right.legend(fontsize=7)
    return _save(fig, out)


# --------------------------------------------------------------------------- section


def _has_controls(long: pd.DataFrame) -> bool:
    return bool(long["arm"].isin(CONTROL_ARMS).any())


def _display_controls(controls: pd.DataFrame, primary: str, ckpt: str,
                      metrics: list[str]) -> pd.DataFrame:
    shown = controls[(controls["ckpt"] == ckpt) & controls["metric"].isin(metrics)].copy()
    shown["order"] = shown["metric"].map(metrics.index)
    shown = shown.sort_values(["arch", "order"], kind="stable")
    shown.insert(1, "trained on", [_name(a, n) for a, n in zip(shown["arm"], shown["n"])])
    shown["metric"] = [m + (" *" if m == primary else "") for m in shown["metric"]]
    return shown[["arch", "trained on", "metric", "splits", "mean", "ci_low", "ci_high",
                  "versus", "diff", "diff_low", "diff_high", "p", "p_holm", "note"]]


def _display_equivalents(eq: pd.DataFrame, primary: str, ckpt: str) -> pd.DataFrame:
    shown = eq[eq["ckpt"] == ckpt]
    return pd.DataFrame({
        "arch": shown["arch"], "synthetic n": shown["n"],
        "metric": [m + (" *" if m == primary else "") for m in shown["metric"]],
        "synth mean": shown["synth_mean"], "real equivalent": shown["equivalent"],
        "95% CI": shown["interval"],
        "images": ["–" if pd.isna(v) else f"{v:.0f}" for v in shown["images"]],
        "images 95% CI": ["–" if pd.isna(a) and pd.isna(b) else
                          ("…" if pd.isna(a) else f"{a:.0f}") + " to "
                          + ("…" if pd.isna(b) else f"{b:.0f}")
                          for a, b in zip(shown["images_low"], shown["images_high"])],
        "status": shown["status"], "note": shown["note"]})


def section(long: pd.DataFrame, labels: list[str], n_train: dict, *, ratio: float = 0.0,
            primary: str = "balanced_accuracy", positive: int | None = None,
            fig_dir: Path) -> tuple[str, dict[str, pd.DataFrame], list[Path]]:
    """The page's section "Is it the synthetic images?" (HTML), its tables {"controls.csv",
    "real_equivalents.csv"} (write them with index=False) and its figure [fig_dir/FIGURE]
    (caption: report/captions.py, kind "controls"). ("", {}, []) when the run has no control arm and no
    real fraction (synth rows only). n_train: {split: real training images of the split}."""
    long = arms(long)
    if not _has_controls(long):
        return "", {}, []
    controls = controls_table(long, labels, ratio=ratio, primary=primary, positive=positive)
    eq = real_equivalents(long, labels, n_train, ratio=ratio, primary=primary)
    fig = figure(long, primary, Path(fig_dir) / FIGURE, ratio=ratio)
    ckpt = _best(long)
    present = [a for a in ("dup", "aug", "synthonly", "real") if (long["arm"] == a).any()]
    fractions = sorted(int(p) for p in long.loc[long["arm"] == "real", "n"].unique())
    described = {
        "dup": "<b>dup n</b>: the real training images plus n of them again, count-matched per "
               "label (oversampling: more images, no new information);",
        "aug": "<b>aug n</b>: the same n draws as dup n, as augmented copies (new pixels, no new "
               "patients);",
        "synthonly": "<b>synthonly n</b>: the n synthetic images alone, tested on the real test "
                     "images (do the synthetic images carry the labels' signal?);",
        "real": "<b>real p</b>: a nested p % of the real training images (patient-grouped, "
                f"label-stratified; p = {', '.join(map(str, fractions))}; 100 % is scenario 0): "
                "the real-data learning curve.",
    }
    lines = ["<li><b>synth n</b>: the real training images plus n synthetic images (synth0, "
             "scenario 0: the real images alone);</li>"]
    lines += [f"<li>{described[a]}</li>" for a in present]
    parts = [
        f"<h2 id='controls'>{html.escape(TITLE)}</h2>",
        f"<p>Adding n synthetic images can help because they are synthetic (new, realistic "
        "variation) or merely because training sees more images or longer. The control arms "
        f"tell these apart. In short ({html.escape(_pretty(primary))}, {ckpt} weights):</p>",
        "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in
                         sentences(controls, eq, primary)) + "</ul>",
        "<p>Every arm trains on one split's training images (validation and test images "
        "untouched and real) and is tested on that split's real test images:</p>",
        "<ul>" + "".join(lines) + "</ul>",
        "<p><b>How the comparisons are made.</b> Every arm is compared with scenario 0 "
        "(synth0), and synth n also with dup n and aug n (difference = synth n minus the "
        "other), paired by split: the same real test images. Intervals and p-values are the "
        "Nadeau-Bengio corrected t over splits, as above; within each comparison the p-values "
        "of the metrics other than the primary (*) are Holm-adjusted (<code>p_holm</code>). "
        "better / worse / not distinguishable: whether the difference's 95% CI lies above 0, "
        "below 0, or covers it.</p>",
    ]
    if len(eq):
        parts.append(
            "<p><b>Real equivalents.</b> How many real training images the real-data learning "
            "curve needs to match synth n: the curve is the mean over splits of the metric at "
            "each measured percent of the real training images (real p, and 100 % = scenario "
            "0), made monotone non-decreasing by isotonic regression and read linearly between "
            "the measured percents; it is inverted at synth n's mean (the estimate) and at the "
            "ends of that mean's corrected 95% CI (the interval; the curve's own uncertainty is "
            "not included). Images = percent × the mean number of real training images of the "
            "splits. This assumes more real images never hurt and that the metric moves "
            "linearly between measured fractions. A synth n above the curve's value at 100 % "
            "is <i>beyond the curve</i> (&gt; 100 %: worth more than all the real images we "
            "have; no number, since the curve is not extrapolated); one below its smallest "
            "fraction is <i>below the curve</i>. Where the curve is flat at the value, any "
            "fraction of the flat stretch matches; the least is given and the stretch noted."
            "</p>")
    elif "real" not in present:
        parts.append("<p>No real-data learning curve: config <code>real_fractions</code> is "
                     "empty.</p>")
    metrics = [primary] + [m for m in ("balanced_accuracy", "macro_f1", "auc", "accuracy")
                           if m != primary]
    parts += [f"<h3>Arms against scenario 0 and each other ({ckpt} weights)</h3>",
              f"<p>{', '.join(_pretty(m) for m in metrics)}; every metric and both weights are "
              "in <code>controls.csv</code>.</p>",
              _table(_display_controls(controls, primary, ckpt, metrics))]
    if len(eq):
        parts += [f"<h3>Real equivalents of the synthetic images ({ckpt} weights)</h3>",
                  "<p>Every metric and both weights: <code>real_equivalents.csv</code>.</p>",
                  _table(_display_equivalents(eq, primary, ckpt))]
    return ("\n".join(parts), {"controls.csv": controls, "real_equivalents.csv": eq}, [fig])

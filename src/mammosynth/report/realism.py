"""The report's answer to "Are the synthetic images usable?": the realism verdict of every
split x label set of synthetic images (the `realism` block of the quality JSONs), beside the
same checks on held-out real images, as a table, a page section and one marker per scenario row.

Everything shown comes from the quality files (read by report.inputs.read_quality, whose records
every function here takes), thresholds included: the page never states a threshold the verdict
did not use.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from mammosynth import realism as verdict_rules

# The checks, in the order the quality stage writes them, and the colours best to worst: the
# verdict's own (mammosynth.realism), not a second list.
CHECKS = list(verdict_rules.CHECKS)
COLOURS = verdict_rules.COLOURS
NOT_COMPUTED = "not computed"
SETS = ("synthetic", "held-out real")
REALISM_COLUMNS = (["split", "label", "set", "verdict"]
                   + [c for check in CHECKS for c in (check, f"{check}_status")]
                   + ["c2st_p", "c2st_null_low", "c2st_null_high"])
C2ST_EXTRA = {"c2st_p": "p_value", "c2st_null_low": "null_low", "c2st_null_high": "null_high"}
RED_MARK = "synthetic images rated red"

# Cell and badge colours, one class per status (grey: not computed).
STYLE = """
.green{background:#e2f5df} .amber{background:#fff0c2} .red{background:#f9d0d0}
.grey{background:#eee;color:#555}
.badge{display:inline-block;min-width:5.5em;text-align:center;border-radius:.8em;
padding:0 .6em;margin-right:.4em;font-weight:bold}
"""

# What each check measures, in plain words (the thresholds come from the JSON).
MEANING = {
    "c2st_auc": "real-vs-synthetic two-sample test: a linear (ridge) classifier on 16x16 "
                "thumbnails plus an intensity histogram tries to tell the label's real training images "
                "from the synthetic ones; its cross-validated ROC AUC (0.5: it cannot tell them "
                "apart; 1.0: every image gives itself away)",
    "label_fidelity_gap": "the split's real-only classifier's recall on the label's real test "
                          "images minus the fraction of synthetic images it gives their "
                          "intended label (0: synthetic images are as recognisable as real "
                          "ones; n/a without a classifier)",
    "precision": "Naeem et al.'s precision in the real-only classifier's feature space: the "
                 "fraction of synthetic images inside the real images' k-nearest-neighbour "
                 "balls (do they look like real images?)",
    "coverage": "Naeem et al.'s coverage: the fraction of real images with a synthetic image in "
                "their k-nearest-neighbour ball (do the synthetic images span the real "
                "variety, or collapse onto a few?)",
    "intensity_w1": "Wasserstein-1 distance between the breast-pixel intensities of real and "
                    "synthetic images ([0, 1] scale)",
    "background_gap": "difference in the fraction of background (near-black) pixels: a breast "
                      "of the wrong size or a grey background shows here",
    "noise_ratio": "high-frequency noise inside the breast (std of the image minus its "
                   "1-pixel Gaussian blur), synthetic / real: below 1 too smooth, above 1 too "
                   "noisy",
}


# --------------------------------------------------------------------------- the table


def _row(split: str, label: str, name: str, block: dict | None, c2st: dict | None) -> dict:
    """One table row: a set's verdict, every check's value and status, the c2st permutation p
    and the AUCs chance gives at these set sizes."""
    block = block or {}
    checks = {c["check"]: c for c in block.get("checks") or []}
    row = {"split": split, "label": label, "set": name,
           "verdict": block.get("verdict") or NOT_COMPUTED}
    for check in CHECKS:
        c = checks.get(check, {})
        row[check], row[f"{check}_status"] = c.get("value"), c.get("status") or NOT_COMPUTED
    for column, key in C2ST_EXTRA.items():
        row[column] = (c2st or {}).get(key)
    return row


def realism_table(quality: list[dict]) -> pd.DataFrame:
    """One row per split x label x set (synthetic, held-out real) of the quality records
    [{split, label, realism}] that hold a realism verdict (realism None: a file written before
    the verdict existed); the held-out real row is the floor a perfect generator reaches."""
    rows = []
    for q in quality:
        r = q["realism"]
        if r is None:
            continue
        rows.append(_row(q["split"], q["label"], "synthetic", r, r.get("c2st")))
        rows.append(_row(q["split"], q["label"], "held-out real", r.get("reference"),
                         r.get("reference_c2st")))
    table = pd.DataFrame(rows, columns=REALISM_COLUMNS)
    return table.astype({c: float for c in CHECKS + list(C2ST_EXTRA)})


# --------------------------------------------------------------------------- verdicts


def worst(verdicts) -> str:
    """The worst colour among `verdicts`; "not computed" when none has a colour (a set or
    check that could not be computed does not count, as in the quality stage's verdict)."""
    seen = [v for v in verdicts if v in COLOURS]
    return max(seen, key=COLOURS.index) if seen else NOT_COMPUTED


def set_verdicts(table: pd.DataFrame) -> dict:
    """{(split, label): verdict} of the synthetic sets (not the held-out references)."""
    synthetic = table[table["set"] == "synthetic"]
    return {(str(s), str(lab)): v for s, lab, v in
            zip(synthetic["split"], synthetic["label"], synthetic["verdict"])}


def scenario_marker(verdicts: dict, splits, labels: list[str], protocol: str) -> str:
    """The worst verdict over the sets a scenario's models trained with: under protocol
    rigorous split s uses the DDPMs of split s, under paper every split uses split "all"."""
    ddpm_splits = {"all"} if protocol == "paper" else {str(s) for s in splits}
    return worst(verdicts.get((s, label), NOT_COMPUTED)
                 for s in sorted(ddpm_splits) for label in labels)


def red_sets(table: pd.DataFrame) -> list[str]:
    """'split s / label' of every synthetic set rated red."""
    red = table[(table["set"] == "synthetic") & (table["verdict"] == "red")]
    return [f"split {s} / {lab}" for s, lab in zip(red["split"], red["label"])]


# --------------------------------------------------------------------------- HTML


def _css(status) -> str:
    return status if status in COLOURS else "grey"


def badge(verdict: str) -> str:
    return f"<span class='badge {_css(verdict)}'>{html.escape(verdict)}</span>"


def _number(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else \
        f"{value:.{digits}f}"


def red_warning(table: pd.DataFrame) -> str:
    """The box at the top of the page when a synthetic set is rated red; '' otherwise."""
    red = red_sets(table)
    if not red:
        return ""
    return (f"<p class='warn'><b>Synthetic images rated red: {html.escape(', '.join(red))}</b>"
            " — rows of the scenario table that use them are marked "
            f"\"{RED_MARK}\". See <i>Are the synthetic images usable?</i> below.</p>")


def summary_lines(table: pd.DataFrame, missing: list[dict]) -> str:
    """One line per split x label: badge, the checks that are not green, the reference."""
    lines = []
    for (split, label), g in table.groupby(["split", "label"], sort=True):
        syn = g[g["set"] == "synthetic"].iloc[0]
        ref = g[g["set"] == "held-out real"].iloc[0]
        parts = [f"{colour}: " + ", ".join(c for c in CHECKS if syn[f"{c}_status"] == colour)
                 for colour in ("red", "amber")
                 if any(syn[f"{c}_status"] == colour for c in CHECKS)]
        flagged = "; ".join(parts) or "no check red or amber"
        lines.append(f"<li>{badge(syn['verdict'])} split {html.escape(split)}, "
                     f"{html.escape(label)}: {html.escape(flagged)} "
                     f"(held-out real reference: {html.escape(ref['verdict'])})</li>")
    for q in missing:
        lines.append(f"<li>{badge(NOT_COMPUTED)} split {html.escape(q['split'])}, "
                     f"{html.escape(q['label'])}: no realism verdict in this quality file</li>")
    return "<ul>" + "\n".join(lines) + "</ul>"


def _cell(row: pd.Series, check: str) -> str:
    digits = 2 if check == "noise_ratio" else 3
    text = _number(row[check], digits)
    if check == "c2st_auc" and not pd.isna(row["c2st_null_low"]):
        text += (f" (chance {_number(row['c2st_null_low'], 2)}–"
                 f"{_number(row['c2st_null_high'], 2)}, p {_number(row['c2st_p'], 2)})")
    return f"<td class='{_css(row[f'{check}_status'])}'>{text}</td>"


def table_html(table: pd.DataFrame) -> str:
    """The realism table: each synthetic row above its held-out real reference, every value
    cell coloured by its status."""
    head = ["split", "label", "set", "verdict"] + CHECKS
    rows = []
    for _, r in table.sort_values(["split", "label"], kind="stable").iterrows():
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>"
                                     for c in ("split", "label", "set"))
                    + f"<td class='{_css(r['verdict'])}'>{html.escape(r['verdict'])}</td>"
                    + "".join(_cell(r, c) for c in CHECKS) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "\n".join(rows) + "</table>")


def _band(direction: str, green, amber) -> str:
    """A check's thresholds in words, from the values in the JSON."""
    if direction == "high":
        return f"Higher is better: green ≥ {green:g}, amber ≥ {amber:g}, red below"
    if direction == "ratio":
        return (f"A factor away from 1 either way is worse: green within ×{green:g} "
                f"({1 / green:.2f}–{green:g}), amber within ×{amber:g} "
                f"({1 / amber:.2f}–{amber:g}), red beyond")
    return f"Lower is better: green ≤ {green:g}, amber ≤ {amber:g}, red above"


def thresholds(quality: list[dict]) -> dict:
    """{check: [(direction, green, amber), ...]}: the distinct thresholds the files used."""
    out = {check: [] for check in CHECKS}
    for q in quality:
        for c in (q["realism"] or {}).get("checks") or []:
            band = (c.get("direction", "low"), c.get("green"), c.get("amber"))
            if c.get("check") in out and None not in band[1:] and band not in out[c["check"]]:
                out[c["check"]].append(band)
    return out


def explanation(quality: list[dict]) -> str:
    """Every check in plain words with its thresholds, then how to read the reference rows
    and the intervals."""
    items = []
    for check, bands in thresholds(quality).items():
        rule = "; ".join(_band(*b) for b in bands) or "thresholds not recorded"
        items.append(f"<li><b>{check}</b>: {html.escape(MEANING[check])}. "
                     f"{html.escape(rule)}.</li>")
    return (
        "<ul class='note'>" + "\n".join(items) + "</ul>"
        "<p class='note'>A set's verdict is its worst colour; a check that could not be "
        "computed (n/a, grey) does not count. The <b>held-out real</b> row applies the same "
        "checks to the label's real validation and test images presented as if they were "
        "synthetic: it is the floor a perfect generator would reach, so a synthetic value "
        "close to its reference is as good as real images get, whatever its colour. Beside the "
        "c2st AUC (the mean of 5 shufflings of 5-fold cross-validation) stands the range of "
        "AUCs chance gives at these set sizes (2.5–97.5 percentiles of the same "
        "cross-validation on 100 random relabellings) and the permutation p; it assumes the "
        "images are exchangeable, but the images of one woman (views, breasts) are not "
        "independent, so with few women chance is wider than shown. Rows of the scenario "
        "table that use synthetic images carry the worst verdict of the sets their models "
        "trained with (column <code>realism</code>).</p>")


def section(quality: list[dict], table: pd.DataFrame) -> str:
    """The page section "Are the synthetic images usable?" of the quality records and their
    realism table (realism_table)."""
    head = "<h2>Are the synthetic images usable?</h2>"
    if not quality:
        return head + "<p>No synthetic images in this run.</p>"
    if table.empty:
        return head + "<p>No realism verdict in these quality files.</p>"
    missing = [q for q in quality if q["realism"] is None]
    return (head + "<p>Realism verdict per split × label (<code>realism.csv</code>), computed "
            "from the quality files without any download.</p>"
            + summary_lines(table, missing) + table_html(table) + explanation(quality))

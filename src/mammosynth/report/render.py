"""Rendering: results/report/ as a reader gets it - every table as CSV (+ Markdown), the
figures as PNG, and one self-contained HTML page (figures embedded) that a reader can open,
print or send as it is. It shows what report.tables computed from what report.inputs read, and
computes nothing of its own but the control arms' and confounds' sections.
"""

from __future__ import annotations

import base64
import html
import os
import shutil
from pathlib import Path

import pandas as pd
import yaml

from mammosynth.report import confounds, controls, figures, realism, stats
from mammosynth.report.captions import CAPTIONS
from mammosynth.report.inputs import QUALITY_FIGURES, Inputs
from mammosynth.report.leakage import LEAK_COUNTS
from mammosynth.report.tables import (Tables, checkpoint_markdown, checkpoint_metrics,
                                      confusion_matrices, holm_family, input_table,
                                      scenario_markdown, scenario_metrics)

STYLE = """
body{font-family:system-ui,sans-serif;max-width:78em;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.warn{border:2px solid #c00;background:#fff4f4;padding:.6em 1em}
.ok{border:1px solid #2a2;background:#f4fff4;padding:.6em 1em}
figure{margin:1.2em 0} figcaption{font-size:.9em;color:#444;max-width:60em}
img{max-width:100%} pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}
.note{font-size:.9em;color:#444}
""" + realism.STYLE

PAPER_VIOLATIONS = (
    "Protocol <b>paper</b> reproduces the papers' own procedure, which violates three rules of "
    "a clean evaluation: (1) the DDPMs are trained on every real image, so the test images "
    "shaped the synthetic images (<code>test_images_seen_by_ddpm</code>); (2) splits are random "
    "at the image level, so a patient's other views sit in training while one is tested "
    "(<code>test_patients_seen</code>); (3) synthetic images are pooled before the split, so some "
    "test images are synthetic (<code>test_synthetic</code>). With no validation set, "
    "\"best\" weights are those with the lowest <i>training</i> loss. These numbers are "
    "<b>leaky</b>: compare them with protocol rigorous, never publish them alone.")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<img src='data:image/png;base64,{data}' alt='{html.escape(path.name)}'>"


def _table(frame: pd.DataFrame, floats: str = "%.3f") -> str:
    return frame.to_html(index=False, float_format=floats, na_rep="–", border=0)


def config_summary(config: dict) -> pd.DataFrame:
    c = config
    rows = [
        ("protocol", c["protocol"]), ("seed", c["seed"]),
        ("data set", f"{c['dataset']['format']} at {c['dataset']['root']}"),
        ("labels", ("custom map" if c["labels"].get("map") else c["labels"]["scheme"])
                   + f"; positive class {c['labels']['positive']} (two labels)"),
        ("preprocess", f"{c['preprocess']['size']} px, chest wall side from the "
                       f"{c['preprocess']['orientation']}"),
        ("splits", f"{c['splits']['scheme'] if c['protocol'] == 'rigorous' else 'random'}, "
                   f"ids {c['splits']['ids']}, test {c['splits']['test_fraction']}, "
                   f"val {c['splits']['val_fraction']}"),
        ("DDPM", f"{c['ddpm']['conditioning']}, {c['ddpm']['image_size']} px, channels "
                 f"{c['ddpm']['block_out_channels']}, T={c['ddpm']['timesteps']} "
                 f"{c['ddpm']['beta_schedule']}"
                 f"{' zero-terminal-SNR' if c['ddpm']['zero_terminal_snr'] else ''}, "
                 f"{c['ddpm']['prediction_type']}, min-SNR {c['ddpm']['snr_gamma']}, "
                 f"{c['ddpm']['steps']} steps, batch {c['ddpm']['batch_size']}"),
        ("sampling", f"{c['sampling']['scheduler']}, {c['sampling']['steps']} steps"
                     + (f", guidance {c['sampling']['guidance_scale']}"
                        if c['ddpm']['conditioning'] == 'class' else "")
                     + "; post-processed with the real images' background rule"),
        ("scenarios (synthetic n)", c["scenarios"]),
        ("classifiers", ", ".join(c["classifier"]["archs"])),
        ("training", f"{c['classifier']['image_size']} px, in_chans "
                     f"{c['classifier']['in_chans']}, {c['classifier']['optimizer']} lr "
                     f"{c['classifier']['lr']}, batch {c['classifier']['batch_size']}, "
                     f"{c['classifier']['epochs']} epochs, patience "
                     f"{c['classifier']['patience']}, best by {c['classifier']['monitor']}, "
                     f"pretrained {'yes' if c['classifier']['pretrained'] else 'no'}"),
        ("bootstrap resamples", c["classifier"]["bootstrap"]),
    ]
    return pd.DataFrame(rows, columns=["setting", "value"]).astype(str)


def laterality_note(manifest: pd.DataFrame, orientation: str) -> str:
    """How many images' metadata side disagrees with the side the breast touches in the image."""
    from mammosynth.imaging.pipeline import laterality_disagreements

    counts = laterality_disagreements(manifest)
    if not counts["checked"]:
        return ("<p>Laterality: no image has a metadata side (L/R); the chest wall side was taken "
                "from each image.</p>")
    used = ("the metadata's side was used (<code>preprocess.orientation: metadata</code>)"
            if orientation == "metadata" else
            "the image's side was used (<code>preprocess.orientation: image</code>)")
    css = " class='warn'" if counts["disagree"] and orientation == "metadata" else ""
    text = (f"<p{css}>Laterality: {counts['disagree']} of {counts['checked']} images with a metadata "
            "side (L/R) have their breast against the other edge of the image; " + used + ".")
    if counts["disagree"]:
        text += (" Disagreeing images, e.g. "
                 + ", ".join(html.escape(str(i)) for i in counts["examples"])
                 + ": check them (a wrong laterality tag puts the chest wall on the right after "
                 "preprocessing, unless orientation is image).")
    return text + "</p>"


def best_objective(cfg: dict) -> str:
    """What "lowest loss" means for config `classifier` (cfg): the trained objective or not."""
    weighted = cfg["class_weights"] == "balanced"
    if cfg["monitor"] == "val_loss" and weighted and cfg["monitor_weighting"] == "none":
        return ("<b>unweighted</b> although training weights the classes "
                "(classifier.monitor_weighting: none): best is chosen on another objective than "
                "the one trained")
    return ("class-weighted like the training loss (the objective trained)" if weighted else
            "unweighted, like the training loss (the objective trained)")


def statistics_note(config: dict, k: int, ratio: float, primary: str, labels: list[str],
                    positive: int | None) -> str:
    """The page's statement of how every interval and p-value was made, with the numbers."""
    rigorous = config["protocol"] == "rigorous"
    scheme = config["splits"]["scheme"] if rigorous else "random"
    if rigorous and config["splits"]["official_test"]:
        overlap = ("they share most training images and every split tests on the same official "
                   "test set - so the spread between splits holds no test-set sampling error, "
                   "and the intervals cover training variation only")
    elif scheme == "kfold":
        overlap = ("their test folds are disjoint, but each training set shares most images "
                   "with the others")
    else:
        overlap = "they share most training images and part of their test images"
    aliases = stats.same_as(labels, positive)
    n_scenario = len(holm_family(scenario_metrics(labels), primary, aliases)[0])
    n_checkpoint = len(holm_family(checkpoint_metrics(labels), primary, aliases)[0])
    return (
        "<p><b>How the intervals and tests were made.</b> Means ± sd are over splits. The "
        f"{k} splits are not independent samples: {overlap}, so their results are positively "
        "correlated and a plain t interval over them would be too narrow. Every interval and "
        "p-value over splits is therefore the Nadeau-Bengio corrected resampled t (Nadeau and "
        "Bengio 2003): the variance of a mean over k splits is s²(1/k + n<sub>test</sub>/"
        f"n<sub>train</sub>) instead of s²/k, here with n<sub>test</sub>/n<sub>train</sub> = "
        f"{ratio:.3f} (test images over real training images, mean over the split files"
        + ("; the real images only, although protocol paper's models also train and test on "
           "synthetic ones" if not rigorous else "") + "), "
        f"i.e. the variance × {stats.factor(k, ratio):.2f} and intervals × "
        f"{stats.factor(k, ratio) ** 0.5:.2f} wider than the naive ones, with k - 1 = {k - 1} "
        "degrees of freedom. It assumes the correlation between two splits' results is what "
        "their overlap implies (n<sub>test</sub> / (n<sub>test</sub> + n<sub>train</sub>)); "
        "it is a heuristic, and cannot make splits of one data set worth independent data sets. "
        "Intervals are clipped to the metric's range. A difference that is the same on every "
        "split has no interval and no p-value (never p = 0). "
        f"Primary metric: <b>{html.escape(primary)}</b> (marked *; config "
        "<code>report.primary_metric</code>), tested at the 5% level; the p-values of the "
        f"other metrics of a comparison ({n_scenario} in the scenario table, {n_checkpoint} in "
        "the checkpoint table; a metric that equals another by definition, such as macro recall "
        "and balanced accuracy, counts once) are Holm-adjusted within it "
        "(<code>p_holm</code>), because with that many metrics one will often look "
        "significant by chance. Macro averages (precision, recall, F1, AUC, PR-AUC) are over the "
        "classes present in the test set; a class never predicted has no precision (NaN in the "
        "files, – on this page) and is left out of the macro precision, while its recall and F1 "
        "(0) count."
        + (f" Sensitivity, specificity, AUC and PR-AUC take <b>"
           f"{html.escape(config['labels']['positive'])}</b> as the positive class "
           "(<code>labels.positive</code>)." if len(labels) == 2 else "") + "</p>")


# A quality figure (inputs.QUALITY_FIGURES) -> its kind on the page (report.captions).
QUALITY_KINDS = {"nn": "memorization", "pairs": "pairs"}


def write(out_dir: str | Path, inputs: Inputs, tables: Tables, config: dict,
          labels: list[str]) -> None:
    """results/report/: the tables, the figures (figures/, emptied first) and index.html."""
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for old in fig_dir.glob("*.png"):
        old.unlink()
    t = tables
    controls_html, control_tables, control_figs = controls.section(
        t.every, labels, t.n_train, ratio=t.ratio, primary=t.primary, positive=t.positive,
        fig_dir=fig_dir)
    confounds_html, confound_tables = confounds.section(inputs.manifest, inputs.splits,
                                                        t.predictions, labels, t.positive)
    write_tables(out, inputs, t, control_tables, confound_tables, config)
    figs = draw_figures(fig_dir, inputs, t, labels,
                        control_figs=[("controls", path) for path in control_figs])
    _write(out / "index.html", page(inputs, t, config, labels, controls_html=controls_html,
                                    confounds_html=confounds_html, figs=figs))


def write_tables(out: Path, inputs: Inputs, t: Tables, control_tables: dict,
                 confound_tables: dict, config: dict) -> None:
    """Every table as CSV (NaN for an undefined value), the scenario and checkpoint tables as
    Markdown too, and config.yaml; a table this run does not make is removed."""
    t.every.to_csv(out / "metrics.csv", index=False, na_rep="NaN")
    for name in controls.TABLES:
        (out / name).unlink(missing_ok=True)
    for name, frame in control_tables.items():
        frame.to_csv(out / name, index=False, na_rep="NaN")
    t.scenario.to_csv(out / "scenario.csv", index=False, na_rep="NaN")
    _write(out / "scenario.md", scenario_markdown(t.scenario, t.metrics_shown, t.primary))
    for old in ("metrics_real_test.csv", "scenario_real_test.csv", "scenario_real_test.md"):
        (out / old).unlink(missing_ok=True)
    if t.scenario_real is not None:
        t.long_real.to_csv(out / "metrics_real_test.csv", index=False, na_rep="NaN")
        t.scenario_real.to_csv(out / "scenario_real_test.csv", index=False, na_rep="NaN")
        _write(out / "scenario_real_test.md",
               scenario_markdown(t.scenario_real, t.metrics_shown, t.primary))
    for name in confounds.TABLES:
        (out / name).unlink(missing_ok=True)
    for name, frame in confound_tables.items():
        frame.to_csv(out / name, index=False, na_rep="NaN")
    t.checkpoints.to_csv(out / "checkpoints.csv", index=False, na_rep="NaN")
    _write(out / "checkpoints.md", checkpoint_markdown(t.checkpoints, t.primary))
    t.data.to_csv(out / "data.csv", index=False)
    t.synthetic.to_csv(out / "synthetic.csv", index=False)
    t.rejected.to_csv(out / "rejected.csv", index=False)
    inputs.leakage.to_csv(out / "leakage.csv", index=False)
    t.quality.to_csv(out / "quality.csv", index=False)
    t.realism.to_csv(out / "realism.csv", index=False)
    _write(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))


def draw_figures(fig_dir: Path, inputs: Inputs, t: Tables, labels: list[str], *,
                 control_figs: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """[(kind, path)] of every figure in page order: the scenarios, per arch its training
    curves, checkpoints, ROC and confusion matrices, the control arms' (drawn by their
    section), the sample grids, then the quality audit's figures copied in."""
    figs = [("scenarios", figures.scenarios(t.scenario, fig_dir / "scenarios-all.png"))]
    for arch in sorted(t.long["arch"].unique()):
        hist = {(m["n"], m["split"]): m["history"]
                for m in inputs.models if m["arch"] == arch and m["arm"] == "synth"}
        figs.append(("curves", figures.curves(hist, arch, fig_dir / f"curves-{arch}.png")))
        figs.append(("checkpoints", figures.checkpoints(t.long, arch,
                                                        fig_dir / f"checkpoints-{arch}.png")))
        pooled = {synth: pd.concat([p for (a, s, _, c), p in t.predictions.items()
                                    if a == arch and s == synth and c == "best"])
                  for synth in sorted(t.long["synth"].unique())}
        figs.append(("roc", figures.roc(pooled, arch, labels, fig_dir / f"roc-{arch}.png",
                                        t.positive)))
        figs.append(("confusion", figures.confusion(confusion_matrices(t.scenario_evals, arch),
                                                    arch, labels,
                                                    fig_dir / f"confusion-{arch}.png")))
    figs += control_figs
    for label, (real, synth) in inputs.samples.items():
        figs.append(("samples", figures.samples(real, synth, label,
                                                fig_dir / f"samples-{label}.png")))
    for q in inputs.quality:
        for figure in QUALITY_FIGURES:
            if figure in q["figures"]:
                kind = QUALITY_KINDS[figure]
                copy = fig_dir / f"{kind}-split{q['split']}-{q['label']}.png"
                figs.append((kind, Path(shutil.copyfile(q["figures"][figure], copy))))
    return figs


def page(inputs: Inputs, t: Tables, config: dict, labels: list[str], *, controls_html: str,
         confounds_html: str, figs: list[tuple[str, Path]]) -> str:
    """index.html: every section, then every figure with its caption."""
    protocol, cfg, published = config["protocol"], config["classifier"], t.published
    manifest, leakage, rejected = inputs.manifest, inputs.leakage, t.rejected
    primary, metrics_shown = t.primary, t.metrics_shown
    leaks = leakage[LEAK_COUNTS].to_numpy().sum() if len(leakage) else 0
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mammosynth report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>mammosynth report</h1>",
        realism.red_warning(t.realism),
        confounds.top_warning(manifest, labels),
        f"<p>Protocol: <b>{html.escape(protocol)}</b>. {t.k} split(s); every number is "
        "recomputed from the evaluation, prediction, history and composition files under "
        "<code>results/</code>.</p>",
        statistics_note(config, t.k, t.ratio, primary, labels, t.positive),
        f"<p class='warn'>{PAPER_VIOLATIONS}</p>" if protocol == "paper" else "",
        realism.section(inputs.quality, t.realism),
        "<h2>Configuration</h2>", _table(config_summary(config)),
        "<details><summary>Full configuration (config.yaml)</summary><pre>"
        f"{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre></details>",
        "<h2>Data</h2>",
        _table(input_table(manifest)),
        f"<p>{len(rejected)} input(s) rejected (<code>rejected.csv</code>)"
        + (":</p>" + _table(rejected.head(50)) if len(rejected) else ".</p>"),
        "<p>Real images per split, subset and label (<code>data.csv</code>):</p>",
        t.data.pivot_table(index=["split", "subset"], columns="label", values="images",
                           fill_value=0).to_html(border=0),
        "<p>Synthetic images per model and subset (<code>synthetic.csv</code>):</p>",
        _table(t.synthetic),
        laterality_note(manifest, config["preprocess"]["orientation"]),
        confounds_html,
        "<h2>Leakage checks</h2>",
        "<p>Computed per model from its <code>composition.csv</code>, the manifest and the split "
        "file its DDPMs trained on (<code>leakage.csv</code>): synthetic test images, test "
        "patients with an image in train or val, real test images the DDPMs trained on.</p>",
        (f"<p class='warn'>{int(leaks)} leak count(s) above zero: expected under protocol paper "
         "(see above).</p>" if leaks else
         "<p class='ok'>All counts are zero: no patient, synthetic image or DDPM training image "
         "crosses into a test set.</p>"),
        _table(leakage),
        "<h2>Scenarios: does adding synthetic images help?</h2>",
        "<p>Test metrics per classifier, number of synthetic training images and checkpoint: "
        "mean ± sd [corrected 95% CI] over splits; then the change vs scenario 0 "
        + ("<b>unpaired</b> (corrected Welch t): under protocol paper every scenario re-splits "
           "its real and synthetic images, so scenario n and scenario 0 are tested on different "
           "images and a paired test would pair nothing. The metrics of the whole test sets "
           "(which hold synthetic images) come first, those of their real images only second."
           if protocol == "paper" else
           "paired by split (the same real test images; corrected t).")
        + (f" Published values ({html.escape(published['source'])}) are shown as "
           "\"paper x\".</p>" if published else "</p>"),
        "<p>Column <i>realism</i>: the verdict of the synthetic images a row's models trained "
        "with (see above).</p>" if inputs.quality else "",
        _markdown_html(scenario_markdown(t.scenario, metrics_shown, primary)),
        "" if t.scenario_real is None else
        "<h3>The same, on the real test images only (<code>scenario_real_test.csv</code>)</h3>"
        + _markdown_html(scenario_markdown(t.scenario_real, metrics_shown, primary)),
        controls_html,
        "<h2>Checkpoints: do best weights beat the last ones?</h2>",
        f"<p>Per classifier: last vs best weights ({', '.join(checkpoint_metrics(labels))}); the "
        "difference best - last, paired by split (both are tested on the same images), with its "
        "corrected t 95% CI, p and Holm-adjusted p; beside it a paired-bootstrap 95% CI "
        f"({cfg['bootstrap']} resamples of every split's test images, the same draw for both "
        "checkpoints), which holds the trained models fixed and so measures the test images' "
        "sampling error only (resamples whose draw lacked a class are skipped and counted in "
        f"<code>checkpoints.csv</code>). Best = lowest {html.escape(cfg['monitor'])}"
        + f", {best_objective(cfg)}."
        + (f" Paper values: {html.escape(published['source'])}.</p>" if published else "</p>"),
        _markdown_html(checkpoint_markdown(t.checkpoints, primary)),
        "<h2>Synthetic images: quality and memorization</h2>",
        "<p>nn_ncc: each synthetic image's normalised cross-correlation (over the breast, the "
        "black background left out) with its nearest real training image; real_nn_ncc: the same "
        "baseline for real training images, each to its nearest real image of <i>another "
        "patient</i> (a woman's other view or breast would inflate it); near_copies: "
        "synthetic images above the threshold; MS-SSIM: mean pairwise similarity (lower = more "
        "diverse).</p>",
        _table(t.quality) if len(t.quality) else "<p>No synthetic images in this run.</p>",
        "<h2>Figures</h2>",
    ]
    for kind, path in figs:
        parts.append(f"<figure>{_img(path)}<figcaption><b>{html.escape(path.name)}</b>. "
                     f"{html.escape(CAPTIONS[kind])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _td(cell: str) -> str:
    """A table cell; a realism marker is coloured like its verdict."""
    verdict = "red" if cell == realism.RED_MARK else cell
    css = f" class='{verdict}'" if verdict in realism.COLOURS else ""
    return f"<td{css}>{html.escape(cell)}</td>"


def _markdown_html(text: str) -> str:
    """Our Markdown tables (and the paragraphs between them) as HTML."""
    parts, rows = [], []

    def flush():
        if rows:
            head, body = rows[0], rows[2:]
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head)
                         + "</tr>" + "".join("<tr>" + "".join(
                             _td(c) for c in r) + "</tr>" for r in body)
                         + "</table>")
            rows.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        else:
            flush()
            if line.strip():
                parts.append(f"<p class='note'>{html.escape(line)}</p>")
    flush()
    return "\n".join(parts)

"""mammosynth.config.check: every rule between keys, once, at the stage that needs it; command-line
strings coerced by the schema's types; layout.last_stage (which stages a run reaches)."""

from __future__ import annotations

import re

import pytest
from conftest import SCHEMA, load_config, snakemake, write_config

from mammosynth import layout
from mammosynth.config import RULES, check, coerce, validate
from mammosynth.errors import UserError

import yaml


def checked(stage: str = "report", **sections) -> dict:
    return check(load_config("tiny", **sections), SCHEMA, stage=stage)


def refused(stage: str = "report", **sections) -> str:
    with pytest.raises(UserError) as e:
        checked(stage, **sections)
    return str(e.value)


SIX_LABELS = {"map": {f"c{b}": [str(b)] for b in range(6)}}

# (the sections that break one rule, the stage that needs the rule, the message's start)
CASES = {
    "labels_map": (dict(labels={"map": {"a": ["1"], "b": ["1", "2"]}}), "data",
                   "config labels.map: BI-RADS 1 is mapped to both 'a' and 'b'"),
    "dataset_root": (dict(dataset={"format": "inbreast", "root": "/nonexistent/INbreast"}),
                     "data", "config dataset.root: /nonexistent/INbreast is not a folder"),
    "csv_table": (dict(dataset={"format": "csv", "root": "."}), "data",
                  "config dataset.table: required for format csv"),
    "combined_sources": (dict(dataset={"format": "combined"}), "data",
                         "config dataset.sources: format combined needs a list of sources"),
    "combined_source": (dict(dataset={"format": "combined", "sources": [
                            {"format": "folder", "root": "."},
                            {"format": "csv", "root": "/nonexistent/csv"}]}), "data",
                        "config dataset.sources[1].root: /nonexistent/csv is not a folder"),
    "kfold_official": (dict(splits={"scheme": "kfold", "official_test": True}), "data",
                       "config splits.official_test: true contradicts splits.scheme: kfold"),
    "kfold_ids": (dict(splits={"scheme": "kfold", "ids": [0, 4], "test_fraction": 0.25}),
                  "data", "config splits.ids: split id 4 needs fold 4, but splits.scheme kfold"),
    "scenarios": (dict(labels=SIX_LABELS, scenarios=[0, 32]), "ddpm",
                  "config scenarios: 32 synthetic images cannot be split evenly over 6 labels"),
    "attention": (dict(ddpm={"attention_levels": [True]}), "ddpm",
                  "config ddpm.attention_levels: 1 entries for 2 ddpm.block_out_channels"),
    "zero_snr": (dict(ddpm={"zero_terminal_snr": True, "prediction_type": "epsilon"}), "ddpm",
                 "config ddpm.zero_terminal_snr: a zero-SNR schedule needs prediction_type"),
    "sampling_steps": (dict(sampling={"steps": 101}), "ddpm",
                       "config sampling.steps: 101 is more than the 100 timesteps"),
    "controls_paper": (dict(protocol="paper", controls=["dup"]), "classify",
                       "config controls / real_fractions: control arms need protocol rigorous"),
    "controls_no_n": (dict(scenarios=[0], controls=["dup"]), "classify",
                      "config controls: control arms run at the non-zero n of scenarios"),
    "monitor": (dict(splits={"val_fraction": 0}, classifier={"monitor": "val_loss"}),
                "classify", "config classifier.monitor: val_loss needs a validation set"),
    "frozen": (dict(classifier={"freeze_backbone": True}), "classify",
               "config classifier.pretrained: freeze_backbone trains only the head"),
    "pretrained": (dict(classifier={"pretrained": "/nonexistent/w.pth"}), "classify",
                   "config classifier.pretrained: /nonexistent/w.pth (for mobilenetv3_small_050) "
                   "does not exist"),
    "positive": (dict(labels={"positive": "sick"}), "classify",
                 "config labels.positive: 'sick' is not one of the labels (normal, abnormal)"),
    "primary_metric": (dict(labels=SIX_LABELS, scenarios=[0, 6],
                            report={"primary_metric": "sensitivity"}), "report",
                       "config report.primary_metric: sensitivity needs two labels, there are 6"),
    "inception": (dict(quality={"fid": True}), "report",
                  "config quality.inception_weights is not set: FID/KID need a local"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_rule_refuses_at_its_stage_and_not_before(case):
    sections, stage, start = CASES[case]
    assert refused(stage, **sections).startswith(start)
    before = layout.STAGES[:layout.STAGES.index(stage)]
    for earlier in before:  # a run that stops earlier is not refused for this reason
        checked(earlier, **sections)


def test_rules_are_distinct_and_their_messages_too():
    names = {rule.__name__ for _, rule in RULES}
    assert len(names) == len(RULES)
    starts = [start for _, _, start in CASES.values()]
    assert len(set(starts)) == len(starts)
    # every rule is exercised by some case (the case refuses at that rule's stage)
    stages = {stage for _, stage, _ in CASES.values()}
    assert stages == set(layout.STAGES)


def test_the_tiny_config_and_every_preset_pass(tmp_path):
    checked()
    for preset in sorted((SCHEMA.parents[2] / "config/presets").glob("*.yaml")):
        config = yaml.safe_load(preset.read_text())
        # presets point at data sets and weights as downloaded: here, at an empty folder
        dataset = config.setdefault("dataset", {})
        dataset["root"] = str(tmp_path)
        for source in dataset.get("sources", []):
            source["root"] = str(tmp_path)
        dataset.pop("table", None)
        classifier = config.setdefault("classifier", {})
        if classifier.get("pretrained"):
            weights = tmp_path / "weights.pth"
            weights.touch()
            archs = classifier["archs"]
            classifier["pretrained"] = ({a: str(weights) for a in archs} if len(archs) > 1
                                        else str(weights))
        check(config, SCHEMA, stage="report")


def test_model_names_are_checked_against_timm_only_when_asked():
    config = load_config("tiny", classifier={"archs": ["resnet10"]})
    check(config, SCHEMA)  # not asked: no timm import
    with pytest.raises(UserError, match=r"config classifier.archs: 'resnet10' is not a timm "
                                         r"model name; did you mean 'resnet10t'\?"):
        check(load_config("tiny", classifier={"archs": ["resnet10"]}), SCHEMA,
              model_names=True)
    check(load_config("tiny", classifier={"archs": ["nasnetamobile"]}), SCHEMA,
          model_names=True)  # registered by mammosynth.classify


def test_command_line_strings_become_the_schemas_types():
    # what Snakemake's --config classifier='{freeze_backbone: true, epochs: 3}' gives
    config = load_config("tiny", classifier={"freeze_backbone": "false", "epochs": "3",
                                             "lr": "1e-3", "archs": ["resnet10t"]},
                         scenarios=["0", "8"], seed="7", quality={"inception_weights": "null"})
    validate(config, SCHEMA)
    assert config["classifier"]["freeze_backbone"] is False
    assert config["classifier"]["epochs"] == 3 and config["classifier"]["lr"] == 1e-3
    assert config["scenarios"] == [0, 8] and config["seed"] == 7
    assert config["quality"]["inception_weights"] is None
    # a string stays a string where the schema allows one, and nonsense is still refused
    assert coerce({"protocol": "rigorous"}, {"properties": {"protocol": {"enum": ["rigorous"]}}},
                  {}) == {"protocol": "rigorous"}
    with pytest.raises(UserError, match=r"config classifier.epochs: 'many' is a string; use "
                                        r"an integer"):
        validate(load_config("tiny", classifier={"epochs": "many"}), SCHEMA)


@pytest.mark.parametrize("targets, until, stage", [
    ((), (), "report"),
    (("results/report",), (), "report"),
    ((), ("preprocess",), "data"),
    (("all",), ("results/data/manifest.csv",), "data"),
    ((layout.split(0),), (), "data"),
    ((layout.ddpm(0, "normal"), layout.manifest()), (), "ddpm"),
    ((layout.classifier("resnet10t", "synth", 0, 0, layout.weights_file("best")),), (),
     "classify"),
    ((layout.quality(0, "normal"),), (), "report"),
    (("some/other/file",), (), "report"),
])
def test_last_stage_of_a_run(targets, until, stage):
    assert layout.last_stage(targets, until) == stage


@pytest.mark.parametrize("command, stage", [
    ("--profile profiles/default", "report"),
    ("-n --until preprocess --cores 2", "data"),
    ("-n -U split", "data"),
    ("--until=preprocess", "data"),
    ("--cores 2 -n results/data/manifest.csv", "data"),
    ("-n results/ddpm/split0/normal results/splits/split0.csv", "ddpm"),
    ("-n --forcerun train_ddpm", "report"),  # a rule to re-run, not a target
    ("--configfile results/data/x.yaml", "report"),
    ("--target-jobs train_classifier:arch=resnet10t,arm=synth,n=0,split=0", "classify"),
])
def test_last_stage_of_a_command_line(command, stage):
    assert layout.last_stage_of_command(command.split()) == stage


def test_a_partial_run_is_not_refused_for_a_later_stage(tmp_path):
    """The issue's example: 6 labels, scenarios [0, 32]: `--until preprocess` runs; the full
    DAG stops with the scenarios line before any job."""
    config = load_config("tiny", labels=SIX_LABELS, scenarios=[0, 32])
    write_config(tmp_path, config)
    full = snakemake(tmp_path, "-n")
    assert full.returncode == 1
    assert re.search(r"config scenarios: 32 synthetic images cannot be split evenly over 6 "
                     r"labels", full.stderr + full.stdout)
    for args in (["-n", "--until", "preprocess"], ["-n", layout.manifest()]):
        partial = snakemake(tmp_path, *args)
        assert partial.returncode == 0, partial.stderr[-2000:]


def test_command_line_config_is_coerced_by_snakemake_too(tmp_path):
    write_config(tmp_path, load_config("tiny"))
    run = snakemake(tmp_path, "-n", "--config", "classifier={freeze_backbone: true}")
    # 'true' arrives as a string; coerced, it is the boolean the pretrained rule then refuses
    assert run.returncode == 1
    assert "config classifier.pretrained: freeze_backbone trains only the head" in (
        run.stderr + run.stdout), run.stderr[-2000:]

"""Config validation. Invalid configs: each stops `snakemake -n` before any job with one line
naming the key (`config <key>: <what is wrong>; <what to do>`), no schema dump, no traceback. Plus
unit tests of mammosynth.config.validate (defaults as snakemake.utils.validate fills them; the
messages)."""

from __future__ import annotations

import copy
import re

import pytest

from mammosynth import layout
from mammosynth.config import validate
from mammosynth.errors import UserError

from conftest import SCHEMA, load_config, snakemake, write_config

TINY = load_config("tiny")


def changed(**sections) -> dict:
    """tests/configs/tiny.yaml with some keys set (conftest.load_config): `classifier={"lr": 1}`
    updates that section, a list or a value replaces the key, None (`classifier=None`) writes an
    empty section."""
    return load_config("tiny", **sections)


# id -> (config, the one line snakemake must print, as a regex)
INVALID = {
    "typo_top_level": (changed(scenarois=[0]),
                       r"config: unknown key 'scenarois' \(did you mean 'scenarios'\?\)"),
    "typo_nested": (changed(classifier={"lerning_rate": 0.1}),
                    r"config classifier: unknown key 'lerning_rate'; valid keys: archs, .*\blr\b"),
    "typo_nested_close": (changed(classifier={"optimiser": "adam"}),
                          r"config classifier: unknown key 'optimiser' "
                          r"\(did you mean 'optimizer'\?\)"),
    "wrong_type": (changed(classifier={"lr": "fast"}),
                   r"config classifier\.lr: 'fast' is a string; use a number"),
    "negative_epochs": (changed(classifier={"epochs": -3}),
                        r"config classifier\.epochs: -3 is less than the minimum of 1; "
                        r"use 1 or more"),
    "unknown_arch": (changed(classifier={"archs": ["not_a_model"]}),
                     r"config classifier\.archs: 'not_a_model' is not a timm model name"),
    "unknown_scheduler": (changed(sampling={"scheduler": "foo"}),
                          r"config sampling\.scheduler: 'foo' is not allowed; "
                          r"use one of ddpm, ddim, dpmsolver\+\+"),
    "negative_scenario": (changed(scenarios=[-100]),
                          r"config scenarios\[0\]: -100 is less than the minimum of 0"),
    "scenario_not_divisible": (changed(scenarios=[3]),
                               r"config scenarios: 3 synthetic images cannot be split evenly over "
                               r"2 labels \(normal, abnormal\); use multiples of 2"),
    "unknown_label_scheme": (changed(labels={"scheme": "fourclass"}),
                             r"config labels\.scheme: 'fourclass' is not allowed; "
                             r"use one of binary, birads"),
    "bad_birads_in_label_map": (changed(labels={"map": {"normal": [1], "abnormal": [7]}}),
                                r"config labels\.map\.abnormal: 7 is not a BI-RADS category"),
    "unknown_dataset_format": (changed(dataset={"format": "dicomdir"}),
                               r"config dataset\.format: 'dicomdir' is not allowed; "
                               r"use one of phantom, inbreast, csv, folder"),
    "missing_dataset_root": (changed(dataset={"format": "inbreast", "root": "/nonexistent"}),
                             r"config dataset\.root: /nonexistent is not a folder; point it at "
                             r"the inbreast data set"),
    "unknown_protocol": (changed(protocol="strict"),
                         r"config protocol: 'strict' is not allowed; use one of rigorous, paper"),
    "test_fraction_too_big": (changed(splits={"test_fraction": 0.9}),
                              r"config splits\.test_fraction: 0\.9 is not below 0\.5; "
                              r"use a value < 0\.5"),
    "attention_levels_mismatch": (changed(ddpm={"attention_levels": [False, True, True]}),
                                  r"config ddpm\.attention_levels: 3 entries for 2 "
                                  r"ddpm\.block_out_channels; give one true/false per level"),
    "val_loss_without_val_set": (changed(splits={"val_fraction": 0}),
                                 r"config classifier\.monitor: val_loss needs a validation set"),
    "pretrained_true": (changed(classifier={"pretrained": True}),
                        r"config classifier\.pretrained: true, but nothing is downloaded"),
    "positive_not_a_label": (changed(labels={"map": {"benign": [2], "malignant": [4, 5]}}),
                             r"config labels\.positive: 'abnormal' is not one of the labels "
                             r"\(benign, malignant\); set labels\.positive to the positive class"),
    "binary_primary_metric_on_six_labels": (
        changed(labels={"scheme": "birads"}, scenarios=[0, 12],
                report={"primary_metric": "sensitivity"}),
        r"config report\.primary_metric: sensitivity needs two labels, there are 6"),
    "frozen_random_backbone": (changed(classifier={"freeze_backbone": True, "pretrained": None}),
                               r"config classifier\.pretrained: freeze_backbone trains only the "
                               r"head, on a random backbone without pretrained weights; set "
                               r"classifier\.pretrained to a local weights file"),
    "unknown_checkpoint": (changed(classifier={"checkpoints": ["worst"]}),
                           r"config classifier\.checkpoints\[0\]: 'worst' is not allowed; "
                           r"use one of last, best"),
    "empty_archs": (changed(classifier={"archs": []}),
                    r"config classifier\.archs: empty list; give at least 1 item"),
    "seed_as_string": (changed(seed="three"),
                       r"config seed: 'three' is a string; use an integer"),
    "preprocess_size_0": (changed(preprocess={"size": 0}),
                          r"config preprocess\.size: 0 is less than the minimum of 16"),
    "empty_section": (changed(classifier=None),
                      r"config classifier: empty \(null\); use a mapping"),
}


@pytest.mark.integration
@pytest.mark.parametrize("config, expected", INVALID.values(), ids=INVALID.keys())
def test_invalid_config_stops_the_dry_run_with_one_line(tmp_path, config, expected):
    write_config(tmp_path, config)
    run = snakemake(tmp_path, "-n", timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("config")]
    assert len(lines) == 1, out[-3000:]
    assert re.fullmatch(expected + r".*", lines[0]), lines[0]
    assert len(lines[0]) < 300
    for noise in ("Traceback", "$schema", "additionalProperties", "On instance",
                  "Failed validating"):
        assert noise not in out, out[-3000:]
    assert len(out.splitlines()) < 15, out  # the error, where it was raised, the profile notice
    assert not (tmp_path / layout.RESULTS).exists() and not (tmp_path / "logs").exists()


@pytest.mark.integration
def test_a_relative_dataset_root_is_found_in_the_working_directory(tmp_path):
    (tmp_path / "data").mkdir()
    write_config(tmp_path, changed(dataset={"format": "folder", "root": "data"}))
    run = snakemake(tmp_path, "-n", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


# -- mammosynth.config.validate -----------------------------------------------------------------

def snakemake_defaults(config: dict) -> dict:
    from snakemake.utils import validate as snakemake_validate

    config = copy.deepcopy(config)
    snakemake_validate(config, str(SCHEMA))
    return config


@pytest.mark.parametrize("config", [
    {}, TINY, {"classifier": {}}, {"dataset": {"format": "csv", "table": "t.csv"}},
    {"labels": {"map": {"a": [1], "b": [2, "4a"]}}, "report": {"published": None}},
], ids=["empty", "tiny", "empty_section", "csv", "label_map"])
def test_defaults_are_those_snakemake_fills(config):
    mine = copy.deepcopy(config)
    assert validate(mine, SCHEMA) is mine
    assert mine == snakemake_defaults(config)


def test_every_key_is_present_after_validation():
    config = validate({}, SCHEMA)
    assert config["classifier"]["bootstrap"] == 1000
    assert config["dataset"] == {"format": "phantom", "root": "resources/phantom",
                                 "on_bad_image": "reject"}
    assert config["scenarios"] == [0, 100, 250, 500]


def test_given_values_are_kept_and_defaults_are_not_shared():
    config = validate({"classifier": {"lr": 0.5}, "scenarios": [0, 2]}, SCHEMA)
    assert config["classifier"]["lr"] == 0.5 and config["scenarios"] == [0, 2]
    first = validate({}, SCHEMA)
    first["splits"]["ids"].append(9)
    assert validate({}, SCHEMA)["splits"]["ids"] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("config, expected", [
    ({"scenarois": [0]}, "config: unknown key 'scenarois' (did you mean 'scenarios'?)"),
    ({"classifier": {"lr": -1}},
     "config classifier.lr: -1 is not above 0; use a value > 0"),
    ({"classifier": {"lr": "fast"}}, "config classifier.lr: 'fast' is a string; use a number"),
    ({"classifier": {"patience": 2.5}},
     "config classifier.patience: 2.5 is a number; use an integer or null"),
    ({"quality": {"fid": "sometimes"}},
     "config quality.fid: 'sometimes' is a string; use true or false"),
    ({"sampling": {"scheduler": "foo"}},
     "config sampling.scheduler: 'foo' is not allowed; use one of ddpm, ddim, dpmsolver++"),
    ({"preprocess": {"orientation": "content"}},
     "config preprocess.orientation: 'content' is not allowed; use one of metadata, image"),
    ({"report": {"published": "x"}},
     "config report.published: 'x' is not allowed; use one of null, sutjiadi2025, best_weights"),
    ({"scenarios": [0, 0]}, "config scenarios: [0, 0] repeats a value; list each once"),
    ({"splits": {"ids": []}}, "config splits.ids: empty list; give at least 1 item"),
    ({"labels": {"map": {"a": [1]}}}, "config labels.map: 1 entry; give at least 2"),
    ({"labels": {"map": {"1a": [1], "b": [2]}}},
     "config labels.map: key '1a' does not match ^[A-Za-z][A-Za-z0-9_]*$; rename it"),
    ({"classifier": {"archs": ["a b"]}},
     "config classifier.archs[0]: 'a b' does not match ^[A-Za-z0-9_.-]+$"),
    ({"classifier": {"pretrained": {"resnet18": 3}}},
     "config classifier.pretrained.resnet18: 3 is an integer; use a string"),
    ({"ddpm": {"dropout": 2}},
     "config ddpm.dropout: 2 is more than the maximum of 1; use 1 or less"),
    ({"seed": True}, "config seed: true is a boolean; use an integer"),
    ({"dataset": None}, "config dataset: empty (null); use a mapping (key: value)"),
])
def test_messages_name_the_key_and_what_to_do(config, expected):
    with pytest.raises(UserError) as e:
        validate(config, SCHEMA)
    assert str(e.value) == expected


def test_several_unknown_keys_are_all_named():
    with pytest.raises(UserError, match=r"^config classifier: unknown keys 'optimiser' \(did you "
                                        r"mean 'optimizer'\?\), 'lerning_rate'; valid keys: archs"):
        validate({"classifier": {"optimiser": "adam", "lerning_rate": 1}}, SCHEMA)


def test_the_shallowest_problem_is_reported_first():
    with pytest.raises(UserError, match=r"^config: unknown key 'sed'"):
        validate({"sed": 1, "classifier": {"lr": "fast"}}, SCHEMA)


def test_long_values_are_cut():
    with pytest.raises(UserError) as e:
        validate({"scenarios": list(range(100)) * 2}, SCHEMA)
    assert len(str(e.value)) < 120 and "..." in str(e.value)

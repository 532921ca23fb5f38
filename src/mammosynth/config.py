"""The workflow's config, checked in one place: `check` (called by workflow/rules/common.smk when
Snakemake builds the DAG, and by nothing else) fills the schema's defaults, coerces command-line
strings by the schema's types, validates against the schema and then applies every rule between
keys that a schema cannot say. A problem is reported as one line naming the key
(`config classifier.lr: ...`), never the schema. The package's stages trust a checked config:
they check only data they alone can see.

Each cross-key rule belongs to the stage whose rules need it (layout.STAGES): a run that stops
earlier (`--until preprocess`, a target under results/data) is not refused for a later stage's
reason."""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from mammosynth import layout
from mammosynth.errors import UserError
from mammosynth.labels import label_map, label_names


def _fill_defaults(validator_class):
    """`validator_class` that first sets each missing property to its schema default, then
    validates it: nested objects' defaults included (their `{}` default is filled in turn), as
    snakemake.utils.validate(set_default=True) does."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if validator.is_type(instance, "object"):
            for key, subschema in props.items():
                if "default" in subschema and key not in instance:
                    instance[key] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, props, instance, schema)

    return validators.extend(validator_class, {"properties": properties})


_Validator = _fill_defaults(Draft202012Validator)


def check(config: dict, schema_path, *, stage: str = layout.STAGES[-1],
          model_names: bool = False) -> dict:
    """The whole config, in place: defaults filled, command-line strings coerced, checked against
    the schema at `schema_path`, then every cross-key rule (RULES) of the stages up to `stage`.
    model_names: also check classifier.archs against timm's registry (imports timm: the main
    Snakemake process only). Returns `config`; raises UserError naming the key."""
    validate(config, schema_path)
    reached = layout.STAGES[:layout.STAGES.index(stage) + 1]
    for rule_stage, rule in RULES:
        if rule_stage in reached:
            problem = rule(config)
            if problem:
                raise UserError(problem)
    if model_names and "classify" in reached:
        for arch in config["classifier"]["archs"]:
            problem = _unknown_arch(arch)
            if problem:
                raise UserError(problem)
    return config


def validate(config: dict, schema_path) -> dict:
    """Check `config` against the schema at `schema_path` (YAML or JSON, Draft 2020-12) after
    coercing command-line strings to the schema's types, and fill every key it leaves out with
    the schema's default, in place. Returns `config`; raises UserError with one line naming the
    key of the most relevant problem."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    coerce(config, schema, schema)
    errors = list(_Validator(schema).iter_errors(config))  # all of them: fills every default
    if errors:
        raise UserError(message(best_match(errors)))
    return config


def coerce(value, schema: dict, root: dict):
    """Snakemake's `--config key=value` parses a nested value with YAML's BaseLoader, so
    `classifier='{freeze_backbone: true}'` gives the string 'true': turn such strings into the
    type the schema asks for (where YAML reads them as that type), in place. Returns the value."""
    schema = _resolve(schema, root)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                value[key] = coerce(item, props[key], root)
            elif isinstance(schema.get("additionalProperties"), dict):
                value[key] = coerce(item, schema["additionalProperties"], root)
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            value[i] = coerce(item, schema["items"], root)
        return value
    types = _types(schema, root)
    if value in ("null", "~") and "null" in types:
        return None
    if isinstance(value, str) and types and "string" not in types:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(parsed, str) and "number" in types:  # YAML 1.1 reads 1e-3 as a string
            try:
                parsed = float(parsed)
            except ValueError:
                return value
        if any(_is(parsed, t) for t in types):
            return coerce(parsed, schema, root) if isinstance(parsed, (dict, list)) else parsed
    return value


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref", "")
    if ref.startswith("#/"):
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _types(schema: dict, root: dict) -> list[str]:
    if "type" in schema:
        return [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
    return [t for sub in schema.get("anyOf", []) + schema.get("oneOf", [])
            for t in _types(_resolve(sub, root), root)]


_PYTHON_TYPES = {"boolean": bool, "array": list, "object": dict, "null": type(None),
                 "string": str}


def _is(value, schema_type: str) -> bool:
    if schema_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if schema_type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _PYTHON_TYPES.get(schema_type, object))


def message(error: ValidationError) -> str:
    """One line: `config <dotted.path>: <what is wrong>; <what to do>`."""
    key = dotted(error.absolute_path)
    return f"config{' ' + key if key else ''}: {_problem(error)}"


def dotted(path) -> str:
    """["classifier", "archs", 0] -> "classifier.archs[0]"."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out


def _problem(e: ValidationError) -> str:
    v, s, value = e.validator, e.validator_value, e.instance
    if "propertyNames" in e.relative_schema_path:  # the instance is a key of the object
        wrong = f"does not match {s}" if v == "pattern" else "is not allowed"
        return f"key {show(value)} {wrong}; rename it"
    if v == "additionalProperties":
        known = list(e.schema.get("properties", {}))
        patterns = list(e.schema.get("patternProperties", {}))
        extra = [k for k in value if k not in known and not any(re.search(p, k) for p in patterns)]
        guesses = [difflib.get_close_matches(k, known, n=1) for k in extra]
        named = ", ".join(f"{show(k)}" + (f" (did you mean {show(g[0])}?)" if g else "")
                          for k, g in zip(extra, guesses))
        text = f"unknown key{'s' if len(extra) > 1 else ''} {named}"
        if not all(guesses):
            text += f"; valid keys: {', '.join(known)}"
        return text
    if v in ("enum", "const"):
        allowed = s if v == "enum" else [s]
        return f"{show(value)} is not allowed; use {'one of ' if len(allowed) > 1 else ''}" \
            + ", ".join(show(a, quote=False) for a in allowed)
    if v == "type":
        expected = " or ".join(_TYPES.get(t, t) for t in ([s] if isinstance(s, str) else s))
        got = "empty (null)" if value is None else f"{show(value)} is {kind(value)}"
        return f"{got}; use {expected}"
    if v == "minimum":
        return f"{show(value)} is less than the minimum of {show(s)}; use {show(s)} or more"
    if v == "maximum":
        return f"{show(value)} is more than the maximum of {show(s)}; use {show(s)} or less"
    if v == "exclusiveMinimum":
        return f"{show(value)} is not above {show(s)}; use a value > {show(s)}"
    if v == "exclusiveMaximum":
        return f"{show(value)} is not below {show(s)}; use a value < {show(s)}"
    if v == "minItems":
        return (f"{'empty list' if not value else f'{len(value)} items'}; "
                f"give at least {s} item{'s' if s > 1 else ''}")
    if v == "maxItems":
        return f"{len(value)} items; give at most {s}"
    if v == "uniqueItems":
        return f"{show(value)} repeats a value; list each once"
    if v == "minProperties":
        return f"{len(value)} entr{'y' if len(value) == 1 else 'ies'}; give at least {s}"
    if v == "pattern":
        return f"{show(value)} does not match {s}"
    if v == "required":
        missing = [k for k in s if k not in value]
        return f"missing key{'s' if len(missing) > 1 else ''} {', '.join(map(show, missing))}"
    return " ".join(e.message.split())[:200]  # any other keyword: jsonschema's own words


_TYPES = {"integer": "an integer", "number": "a number", "string": "a string",
          "boolean": "true or false", "array": "a list", "object": "a mapping (key: value)",
          "null": "null"}


def kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for t, name in ((int, "an integer"), (float, "a number"), (str, "a string"),
                    (list, "a list"), (dict, "a mapping")):
        if isinstance(value, t):
            return name
    return type(value).__name__


def show(value, quote: bool = True, limit: int = 60) -> str:
    """A config value as a YAML user writes it, cut to `limit` characters."""
    if isinstance(value, str):
        text = f"'{value}'" if quote else value
    else:
        text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def pretrained_file(value, arch: str, n_archs: int = 1) -> str | None:
    """config classifier.pretrained -> the local weights file for `arch` (None: random init).

    value: null/false, one file (one arch), or {arch: file}. Nothing can be downloaded, so
    `true` is an error that says what to write instead.
    """
    key = "config classifier.pretrained"
    if value is None or value is False:
        return None
    if value is True:
        raise UserError(f"{key}: true, but nothing is downloaded (offline clusters); set it to a "
                        "local .pth/.safetensors file, or {arch: file} for several archs")
    if isinstance(value, dict):
        if arch not in value:
            raise UserError(f"{key}: no file for {arch}; add '{arch}: /path/to/weights'")
        value = value[arch]
    elif n_archs > 1:
        raise UserError(f"{key}: one file for {n_archs} archs; give one per arch as {{arch: file}}")
    if not Path(value).is_file():
        raise UserError(f"{key}: {value} (for {arch}) does not exist")
    return str(value)


# -- the rules between keys, each with the stage that needs it --------------------------------------

def _labels(config) -> list[str]:
    return label_names(config["labels"])


def _synthetic(config) -> bool:
    """Whether any arm uses synthetic images (so DDPMs are trained)."""
    return max(config["scenarios"]) > 0


def _label_map(config):
    label_map(config["labels"])  # raises UserError naming labels.map


def _dataset_root(config):
    dataset = config["dataset"]
    if dataset["format"] == "phantom":  # generated by the workflow
        return None
    if dataset["format"] != "combined":
        return _data_set(dataset, "config dataset")
    if not dataset.get("sources"):
        return ("config dataset.sources: format combined needs a list of sources "
                "({format, root, birads}); see config/README.md")
    for i, source in enumerate(dataset["sources"]):
        if source["format"] in ("combined", "phantom"):
            return (f"config dataset.sources[{i}].format: {source['format']} cannot be a "
                    "source of a combined data set; list the data sets as downloaded (the "
                    "phantom: format inbreast, root resources/phantom, after generating it)")
        problem = _data_set(source, f"config dataset.sources[{i}]")
        if problem:
            return problem


def _data_set(dataset: dict, key: str) -> str | None:
    """A data set's root is a folder, and its table (csv: required) a file."""
    if not os.path.isdir(dataset["root"]):
        return (f"{key}.root: {dataset['root']} is not a folder; point it at the "
                f"{dataset['format']} data set as downloaded")
    if dataset["format"] == "csv" and not dataset.get("table"):
        return (f"{key}.table: required for format csv (the table that lists the images; "
                "relative to the root or absolute)")
    if dataset.get("table") and not os.path.isfile(os.path.join(dataset["root"],
                                                                dataset["table"])):
        return (f"{key}.table: {dataset['table']} is not a file (relative to the root "
                f"{dataset['root']}, or absolute)")


def _kfold(config):
    splits = config["splits"]
    if splits["scheme"] != "kfold" or config["protocol"] == "paper":  # paper: random splits
        return None
    if splits["official_test"]:
        return ("config splits.official_test: true contradicts splits.scheme: kfold (the "
                "official test set would be every fold's test set); set "
                "splits.official_test: false or splits.scheme: holdout")
    n_folds = kfolds(splits["test_fraction"])
    too_high = [i for i in splits["ids"] if i >= n_folds]
    if too_high:
        return (f"config splits.ids: split id {too_high[0]} needs fold {too_high[0]}, but "
                f"splits.scheme kfold with splits.test_fraction {splits['test_fraction']:g} "
                f"makes {n_folds} folds (0..{n_folds - 1}); use ids below {n_folds} or a "
                "smaller splits.test_fraction")


def kfolds(test_fraction: float) -> int:
    """The number of folds of splits.scheme kfold."""
    return max(2, round(1 / test_fraction))


def _scenarios(config):
    labels = _labels(config)
    for n in config["scenarios"]:
        if n % len(labels):
            return (f"config scenarios: {n} synthetic images cannot be split evenly over "
                    f"{len(labels)} labels ({', '.join(labels)}); use multiples of "
                    f"{len(labels)}")


def _attention_levels(config):
    ddpm = config["ddpm"]
    levels, attention = len(ddpm["block_out_channels"]), ddpm["attention_levels"]
    if _synthetic(config) and attention and len(attention) != levels:
        return (f"config ddpm.attention_levels: {len(attention)} entries for {levels} "
                f"ddpm.block_out_channels; give one true/false per level ({levels})")


def _zero_terminal_snr(config):
    ddpm = config["ddpm"]
    if _synthetic(config) and ddpm["zero_terminal_snr"] and ddpm["prediction_type"] == "epsilon":
        return ("config ddpm.zero_terminal_snr: a zero-SNR schedule needs prediction_type: "
                "v_prediction (epsilon cannot give the clean image from pure noise); set "
                "zero_terminal_snr: false, or prediction_type: v_prediction")


def _sampling_steps(config):
    steps, trained = config["sampling"]["steps"], config["ddpm"]["timesteps"]
    if _synthetic(config) and steps > trained:
        return (f"config sampling.steps: {steps} is more than the {trained} timesteps the DDPM "
                f"is trained with (ddpm.timesteps); use at most {trained}")


def _control_arms(config):
    if (config["controls"] or config["real_fractions"]) and config["protocol"] == "paper":
        return ("config controls / real_fractions: control arms need protocol rigorous (under "
                "paper every arm would re-split its images, so no two arms share a test set); "
                "set controls: [] and real_fractions: [], or protocol: rigorous")
    if config["controls"] and not _synthetic(config):
        return ("config controls: control arms run at the non-zero n of scenarios, and there "
                "is none; add one to scenarios (e.g. [0, 100]) or set controls: []")


def _monitor(config):
    if config["classifier"]["monitor"] == "val_loss" and not config["splits"]["val_fraction"]:
        return ("config classifier.monitor: val_loss needs a validation set; set "
                "splits.val_fraction above 0, or classifier.monitor: train_loss")


def _pretrained(config):
    classifier = config["classifier"]
    if classifier["freeze_backbone"] and not classifier["pretrained"]:
        return ("config classifier.pretrained: freeze_backbone trains only the head, on a "
                "random backbone without pretrained weights; set classifier.pretrained to a "
                "local weights file, or freeze_backbone: false")
    try:
        for arch in classifier["archs"]:
            pretrained_file(classifier["pretrained"], arch, len(classifier["archs"]))
    except UserError as e:
        return str(e)


def _positive(config):
    labels = _labels(config)
    positive = config["labels"]["positive"]
    if len(labels) == 2 and positive not in labels:
        return (f"config labels.positive: {positive!r} is not one of the labels "
                f"({', '.join(labels)}); set labels.positive to the positive class")


def _primary_metric(config):
    labels, chosen = _labels(config), config["report"]["primary_metric"]
    if chosen in BINARY_ONLY and len(labels) != 2:
        return (f"config report.primary_metric: {chosen} needs two labels, there are "
                f"{len(labels)}; use balanced_accuracy, auc or a macro metric")


BINARY_ONLY = ("sensitivity", "specificity")


def _inception_weights(config):
    weights = config["quality"]["inception_weights"]
    if _synthetic(config) and config["quality"]["fid"] and not (weights and
                                                                os.path.isfile(weights)):
        where = "is not set" if not weights else f"{weights} does not exist"
        return (f"config quality.inception_weights {where}: FID/KID need a local Inception-v3 "
                f"weights file (the one torch-fidelity uses, {INCEPTION_URL}); nothing "
                "can be downloaded here, so fetch it elsewhere, copy it in and set its path, or "
                "set quality.fid: false")


INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")


def _unknown_arch(arch: str) -> str | None:
    import timm

    import mammosynth.classify  # noqa: F401  registers the timm model nasnetamobile

    if timm.is_model(arch):
        return None
    close = difflib.get_close_matches(arch, timm.list_models(), n=1)
    return (f"config classifier.archs: {arch!r} is not a timm model name; "
            + (f"did you mean {close[0]!r}?" if close else "see timm.list_models()"))


# (stage, rule): check() runs the rules of every stage a run reaches, in this order.
RULES = [
    ("data", _label_map),
    ("data", _dataset_root),
    ("data", _kfold),
    ("ddpm", _scenarios),
    ("ddpm", _attention_levels),
    ("ddpm", _zero_terminal_snr),
    ("ddpm", _sampling_steps),
    ("classify", _control_arms),
    ("classify", _monitor),
    ("classify", _pretrained),
    ("classify", _positive),
    ("report", _primary_metric),
    ("report", _inception_weights),
]

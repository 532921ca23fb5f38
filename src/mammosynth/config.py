"""The workflow's config: checked against its JSON schema, defaults filled, a problem reported as
one line naming the key (`config classifier.lr: ...`), never the schema."""

from __future__ import annotations

import copy
import difflib
import json
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from mammosynth.errors import UserError


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


def validate(config: dict, schema_path) -> dict:
    """Check `config` against the schema at `schema_path` (YAML or JSON, Draft 2020-12) and fill
    every key it leaves out with the schema's default, in place. Returns `config`; raises
    UserError with one line naming the key of the most relevant problem."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = list(_Validator(schema).iter_errors(config))  # all of them: fills every default
    if errors:
        raise UserError(message(best_match(errors)))
    return config


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

"""Load and validate a gibench config: JSON schema first (unknown keys, types, ranges),
then names against the registries.  Errors name the key and what is allowed."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

# re-exported under their old names here (gibench.config.fmt_ratio, config.REPO_ROOT, ...): they live in
# leaf modules that every layer may import without an import cycle
from .schema import (DEFAULT_PROTECTION, DEFAULT_SCHEMA, DEFAULT_TABLE5_RATIO, REPO_ROOT,  # noqa: F401
                     ConfigError, fill_defaults, load_schema)
from .wildcards import fmt_ratio, fmt_slot, parse_ratio, parse_slot  # noqa: F401

# the study registry and the dataset registry are read by the checks (config sits above the
# pipeline: nothing there imports this module); registries that import torch are imported where
# a check needs them, so that importing this module (the Snakefile does) needs no torch
from .datasets import DATASETS
from .fl_plan import check_fl
from .studies import STUDIES


def _path_str(path: Iterable[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _describe(schema: dict) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    t = schema.get("type")
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if t in ("number", "integer") and lo is not None and hi is not None:
        return f"{'an integer' if t == 'integer' else 'a number'} in [{lo}, {hi}]"
    if t in ("number", "integer") and lo is not None:
        return f"{'an integer' if t == 'integer' else 'a number'} >= {lo}"
    if t:
        return f"a value of type {t}"
    return "a value matching the schema"


def _format_error(err: jsonschema.ValidationError) -> str:
    where = _path_str(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"config error at {where}: unknown key(s) {', '.join(map(repr, extra))}{hint}"
    if err.validator == "required":
        return f"config error at {where}: {err.message}"
    if err.validator == "uniqueItems" and isinstance(err.instance, list):
        seen, dup = [], []
        for v in err.instance:
            (dup if v in seen and v not in dup else seen).append(v)
        return (f"config error at {where}: {', '.join(map(repr, dup))} listed more than once "
                f"(duplicate entries in {err.instance!r})")
    if err.validator == "minItems" and isinstance(err.instance, list):
        return (f"config error at {where}: {err.instance!r} has {len(err.instance)} item(s); "
                f"list at least {err.validator_value}")
    return (f"config error at {where}: {err.instance!r} is not allowed ({err.message}); "
            f"expected {_describe(err.schema)}")


def validate(config: dict, schema_path: str | Path = DEFAULT_SCHEMA) -> dict:
    """Validate ``config`` in place (filling defaults) and return it; raise ConfigError."""
    if not isinstance(config, dict) or not config:
        raise ConfigError("config is empty: give a config file (--configfile) with datasets and studies")
    # every registered study's schema (a plugin's too) is a known key of `studies:`
    schema = load_schema(schema_path, STUDIES.schema_files())
    cls = fill_defaults(jsonschema.Draft202012Validator)
    validator = cls(schema)
    # defaults are filled top-down; run twice so defaults inside filled defaults are set too
    for _ in range(2):
        errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
        if errors:
            raise ConfigError("\n".join(_format_error(e) for e in errors[:5]))
    _check_semantics(config)
    return config


def _check_semantics(config: dict) -> None:
    errs: list[str] = []
    for name, ds in config["datasets"].items():
        if name not in DATASETS:
            errs.append(f"config error at datasets.{name}: unknown dataset {name!r}; known: {', '.join(DATASETS.names())}")
            continue
        entry = DATASETS.get(name)
        src, split = ds.get("source", "bundled"), ds.get("split", "test")
        if src == "bundled" and split not in entry.bundled_splits:
            have = list(entry.bundled_splits)
            errs.append(f"config error at datasets.{name}.split: the bundled slice of {name} has "
                        f"{'split(s) ' + ', '.join(map(repr, have)) if have else 'no split (it is not bundled)'}, "
                        f"not {split!r}; use source: hub for other splits")
            continue
        size = entry.pool_size(src, split)
        if size is not None and ds["victims"] > size:     # before any target list is built from it
            errs.append(f"config error at datasets.{name}.victims: {ds['victims']} is more than the {size} samples "
                        f"of {name}'s {src} split {split!r} (the pool victims are drawn from)")
    if errs:            # study checks and target lists would be built from these sizes
        raise ConfigError("\n".join(errs))
    for study, study_cfg in config["studies"].items():
        errs += STUDIES.get(study).check(config, study_cfg)
        errs += check_fl(config, study)            # the study's fl block (FedAvg runs), if any
    if errs:
        raise ConfigError("\n".join(dict.fromkeys(errs)))


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """A YAML/JSON file's content; a one-line error naming the file (and line and column of a
    syntax error) instead of a traceback or a message without the place.  ``what`` names the
    kind of file in the messages (gibench.claims reads its claims files here too)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: {what} not found (working directory {Path.cwd()})")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = " ".join(x for x in (e.context, e.problem) if x)
        line = text.splitlines()[mark.line] if mark is not None and mark.line < len(text.splitlines()) else ""
        shown = f"\n    {line}\n    {' ' * mark.column}^" if line else ""
        return_hint = " (a tab in the indentation or an unclosed bracket or quote is the usual cause)"
        raise ConfigError(f"{where}: not valid YAML: {what}{return_hint}{shown}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None


def load(path: str | Path, schema_path: str | Path = DEFAULT_SCHEMA) -> dict:
    cfg = read_yaml(path)
    if cfg is not None and not isinstance(cfg, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (datasets:, studies:, ...), "
                          f"not a {type(cfg).__name__}")
    try:
        return validate(cfg or {}, schema_path)
    except ConfigError as e:
        raise ConfigError(f"{path}: " + str(e).replace("\n", f"\n{path}: ")) from None

"""The config schema and the constants every layer shares: where the repository and its schema
are, the defaults that depend on other keys, and :class:`ConfigError`.  Validation, which checks
names against the registries, is :mod:`gibench.config`; this module imports nothing from gibench,
so a library module (``models.pretrain``), ``claims`` or a pipeline module may use it without an
import cycle."""
from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCHEMA = REPO_ROOT / "config" / "schema" / "config.schema.yaml"

# defaults that depend on other keys (not expressible as plain schema defaults)
DEFAULT_PROTECTION = {"image": {"metric": "lpips", "op": ">=", "threshold": 0.3},
                      "text": {"metric": "rouge1", "op": "<=", "threshold": 0.2}}   # (paper) ROUGE-1 <= 0.2
DEFAULT_TABLE5_RATIO = 0.3


class ConfigError(ValueError):
    """A config that cannot be run; the message names the key and what is allowed."""


def fill_defaults(validator_cls):
    """``validator_cls`` extended to fill each missing property that has a ``default`` (a deep
    copy of it) before validating the properties (gibench.config.validate; a study's spec)."""
    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


# libyaml's loader where PyYAML was built with it (the wheels are): the bundled schema files are parsed at
# every DAG build and the pure-Python loader spends ~0.3 s on them; both loaders give the same objects
# (tests/test_config.py compares them on every bundled schema file)
_SCHEMA_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_SCHEMA_LOADER)


def load_schema(path: str | Path = DEFAULT_SCHEMA, studies: Mapping[str, str | Path] | None = None) -> dict:
    """The root schema with every ``studies/<study>.schema.yaml`` beside it merged in as
    ``studies.<study>`` (a study file's own ``$defs`` join the root's), and the ``$defs`` of
    every ``*.defs.yaml`` beside it (reusable pieces such as ``fedavg``) joined to the root's.

    ``studies``: study -> schema file (relative to ``path``'s folder, or absolute) of studies to
    merge the same way; gibench.config passes the study registry's
    (:meth:`gibench.studies.StudyRegistry.schema_files`), so a study registered by a plugin is a
    known key of ``studies:`` and any other name stays an unknown key."""
    path = Path(path)
    schema = _load_yaml(path)
    for f in sorted(path.parent.glob("*.defs.yaml")):
        for k, v in ((_load_yaml(f) or {}).get("$defs") or {}).items():
            if k in schema.setdefault("$defs", {}):
                raise ConfigError(f"{f}: $defs.{k} is already defined by another schema file")
            schema["$defs"][k] = v
    files = {f.name[: -len(".schema.yaml")]: f for f in sorted((path.parent / "studies").glob("*.schema.yaml"))}
    for study, f in (studies or {}).items():
        f = path.parent / f                 # an absolute file stays itself
        if study in files and files[study].resolve() != f.resolve():
            raise ConfigError(f"study {study!r} has two schema files: {files[study]} and {f} (its registration)")
        if not f.is_file():
            raise ConfigError(f"study {study!r}: its registered schema file {f} does not exist")
        files[study] = f
    props = schema["properties"]["studies"].setdefault("properties", {})
    for study, f in files.items():
        sub = _load_yaml(f) or {}
        for k, v in (sub.pop("$defs", None) or {}).items():
            if k in schema.setdefault("$defs", {}):
                raise ConfigError(f"{f}: $defs.{k} is already defined by another schema file")
            schema["$defs"][k] = v
        props[study] = sub
    return schema


@functools.cache
def _defaults_filler():
    """A validator of the root schema that fills its defaults (the one gibench.config.validate uses)."""
    return fill_defaults(jsonschema.Draft202012Validator)(load_schema())


def study_block_with_defaults(study: str, block: Mapping) -> dict:
    """A copy of ``studies.<study>`` with the schema's defaults filled in, twice as
    gibench.config.validate does (defaults inside filled defaults).  A validated block comes back
    equal; unit tests hand over partial blocks.  Errors are the validator's business, not this one's."""
    wrapped = {"studies": {study: copy.deepcopy(dict(block))}}
    filler = _defaults_filler()
    for _ in range(2):
        for _err in filler.iter_errors(wrapped):
            pass
    return wrapped["studies"][study]

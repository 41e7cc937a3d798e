"""Declared parameters of registry entries: what a ``params`` block of the config may hold.

An entry that takes parameters from the config (every attack) registers a :class:`ParamSpec`
with itself (``ATTACKS.register("ig", params=IG_PARAMS)``, ``Registry.params(name)``): the JSON
schema of each key's value, the defaults, and the entry's own resolver for rules that span keys.
The config check calls :func:`attack_param_errors` for every attack of every study when the DAG
is built, so a typo, a wrong type or a value out of range fails before any job runs, naming the
config path (``studies.selective_encryption.attacks.ig.params.lr: 'fast' is not a number > 0``).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import jsonschema

#: (config path of a params block, its mapping), merged left to right into what the job receives
Layer = tuple[str, Mapping[str, Any]]


def describe(schema: Mapping[str, Any]) -> str:
    """What a JSON schema accepts, in words ("a number > 0", "one of 'adam', 'sgd'")."""
    if "enum" in schema:
        return "one of " + ", ".join("null" if v is None else repr(v) for v in schema["enum"])
    if "anyOf" in schema or "oneOf" in schema:
        return " or ".join(describe(s) for s in schema.get("anyOf") or schema["oneOf"])
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    words = []
    for t in types:
        if t in ("number", "integer"):
            w = "an integer" if t == "integer" else "a number"
            bounds = []
            for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                            ("exclusiveMaximum", "<")):
                if key in schema:
                    bounds.append(f"{op} {schema[key]:g}")
            words.append(w + (" " + " and ".join(bounds) if bounds else ""))
        elif t == "boolean":
            words.append("true or false")
        elif t == "null":
            words.append("null")
        elif t == "string":
            words.append("a string")
        elif t == "array":
            item = schema.get("items")
            words.append("a list" + (f" of {describe(item)} values" if isinstance(item, Mapping) else ""))
        elif t == "object":
            words.append("a mapping")
    return " or ".join(words) or "a value matching its schema"


@dataclass(frozen=True)
class ParamSpec:
    """The parameters an entry accepts.

    ``schema``: key -> JSON schema of its value (every key the entry reads; no other key is
    accepted); ``defaults``: the values used when a key is left out (a key may default to
    ``None``: "off" / "decided by the entry"); ``resolve``: the entry's own resolver, called with
    the merged parameters once every key passed its schema (rules that span keys; raises
    ``ValueError``)."""

    owner: str
    schema: Mapping[str, Mapping[str, Any]]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    resolve: Callable[[dict], Any] | None = None

    def value_error(self, key: str, value: Any) -> str | None:
        sub = self.schema[key]
        errs = list(jsonschema.Draft202012Validator(dict(sub)).iter_errors(value))
        if not errs:
            return None
        return f"{value!r} is not {describe(sub)}"

    def errors(self, layers: Sequence[Layer]) -> list[str]:
        """Config errors of ``layers`` merged left to right; each key is reported at the path of
        the layer that sets it, the resolver's complaint at the last layer's path."""
        errs: list[str] = []
        merged: dict[str, Any] = {}
        for where, params in layers:
            if params is None:
                continue
            if not isinstance(params, Mapping):
                errs.append(f"config error at {where}: {params!r} is not a mapping of {self.owner} options")
                continue
            for key, value in params.items():
                if key not in self.schema:
                    near = difflib.get_close_matches(str(key), list(self.schema), n=1)
                    hint = f" (did you mean {near[0]!r}?)" if near else ""
                    errs.append(f"config error at {where}.{key}: unknown option of {self.owner}{hint}; "
                                f"known: {', '.join(sorted(self.schema))}")
                    continue
                bad = self.value_error(key, value)
                if bad:
                    errs.append(f"config error at {where}.{key}: {bad}")
                merged[key] = value
        if not errs and self.resolve is not None and layers:
            try:
                self.resolve(dict(merged))
            except (ValueError, TypeError) as e:
                errs.append(f"config error at {layers[-1][0]}: {e}")
        return errs

    def check(self, params: Mapping[str, Any] | None, where: str = "params") -> None:
        """Raise ``ValueError`` naming every problem of ``params`` (for code outside the config check)."""
        errs = self.errors([(where, dict(params or {}))])
        if errs:
            raise ValueError("\n".join(errs))


def attack_spec(kind: str) -> ParamSpec | None:
    """The declared parameters of attack ``kind`` (image and text attacks: one registry)."""
    from .attacks.base import ATTACKS  # deferred: the attacks register with ParamSpec from this module (importing it runs gibench.attacks, which registers them all)

    if kind in ATTACKS:
        return ATTACKS.params(kind)
    return None


def attack_param_errors(kind: str, layers: Sequence[Layer]) -> list[str]:
    """Config errors of an attack's params blocks (see :meth:`ParamSpec.errors`); an attack that
    declares no parameters accepts none."""
    spec = attack_spec(kind)
    if spec is None:
        given = [(w, p) for w, p in layers if p]
        return [f"config error at {w}: attack {kind!r} declares no parameters (gibench.params.ParamSpec), "
                f"so {sorted(p)} cannot be checked or used" for w, p in given]
    return spec.errors(layers)


def dedupe(errs: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(errs))


__all__ = ["ParamSpec", "Layer", "describe", "attack_spec", "attack_param_errors", "dedupe"]

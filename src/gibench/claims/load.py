"""Loading a claims file (``config/claims/<study>.yaml``): schema validation with messages that
name the file, the claim and the key, the checks' table columns and filters, the
:class:`Claim`/:class:`ClaimsFile` records, and where a config's claims files live."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..config import read_yaml
from ..schema import REPO_ROOT, ConfigError


CLAIMS_DIR = REPO_ROOT / "config" / "claims"
SCHEMA_PATH = REPO_ROOT / "config" / "schema" / "claims.schema.yaml"
STUDIES = ("selective_encryption", "stochastic_defenses", "concealed_samples")

class ClaimsError(ValueError):
    """A claims file that cannot be used; the message names the file, the claim and the key."""


# ====================================================================== loading + validation

@dataclass(frozen=True)
class Claim:
    id: str
    where: str
    words: str
    paper: Any
    scale: Mapping[str, Any]
    check: Mapping[str, Any]
    variants: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""
    index: int = 0


@dataclass(frozen=True)
class ClaimsFile:
    study: str
    paper: str
    path: Path
    tables: Mapping[str, tuple[str, ...]]
    claims: tuple[Claim, ...]
    conventions: tuple[str, ...] = ()

    def tables_read(self) -> list[str]:
        """The tables the claims read, in first-use order."""
        return list(dict.fromkeys(c.check["table"] for c in self.claims if c.check.get("kind") != "none"))


def _schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _where(path: Sequence[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _schema_message(err: Any) -> str:
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
        return (f"unknown key(s) {', '.join(map(repr, extra))}"
                + (f"; allowed keys: {', '.join(allowed)}" if allowed else ""))
    if err.validator == "enum":
        return f"{err.instance!r} is not one of {', '.join(map(repr, err.validator_value))}"
    return err.message


def _claim_label(raw: Any, index: int) -> str:
    cid = raw.get("id") if isinstance(raw, dict) else None
    return f"claim {cid!r} (claims[{index}])" if cid else f"claims[{index}]"


def _fail(path: Path, msg: str) -> ClaimsError:
    return ClaimsError(f"claims file {path}: {msg}")


def validate_claims(data: Any, path: Path) -> list[str]:
    """Error messages (empty: valid); each names the claim and the key."""
    import jsonschema

    schema = _schema()
    cls = jsonschema.Draft202012Validator
    errors: list[str] = []
    if not isinstance(data, dict):
        return [f"claims file {path}: expected a mapping with study, paper, tables, claims"]
    for err in sorted(cls(schema).iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        p = list(err.absolute_path)
        if len(p) >= 2 and p[0] == "claims" and isinstance(p[1], int):
            raw = data["claims"][p[1]]
            at = _where(p[2:]) if p[2:] else "its top level"
            errors.append(f"claims file {path}: {_claim_label(raw, p[1])} at {at}: {_schema_message(err)}")
        else:
            errors.append(f"claims file {path}: at {_where(p)}: {_schema_message(err)}")
    if errors:
        return errors
    tables = {t: list(cols) for t, cols in data["tables"].items()}
    seen: dict[str, int] = {}
    for i, raw in enumerate(data["claims"]):
        label = _claim_label(raw, i)
        if raw["id"] in seen:
            errors.append(f"claims file {path}: {label} at id: {raw['id']!r} is also the id of "
                          f"claims[{seen[raw['id']]}]")
        seen.setdefault(raw["id"], i)
        check = raw["check"]
        kind = check["kind"]
        sub = dict(schema["$defs"][f"check_{kind}"])
        sub["$defs"] = schema["$defs"]
        n_before = len(errors)
        for err in sorted(cls(sub).iter_errors(check), key=lambda e: list(map(str, e.absolute_path))):
            at = "check" + ("." + _where(err.absolute_path) if err.absolute_path else "")
            errors.append(f"claims file {path}: {label} at {at}: {_schema_message(err)}")
        if kind == "none" or len(errors) > n_before:     # the check's shape is wrong: nothing more to say
            continue
        table = check["table"]
        if table not in tables:
            errors.append(f"claims file {path}: {label} at check.table: {table!r} is not declared under `tables` "
                          f"(declared: {', '.join(tables)})")
            continue
        cols = tables[table]
        for key, col in _columns_named(check, raw.get("variants") or {}):
            if col not in cols:
                errors.append(f"claims file {path}: {label} at {key}: {col!r} is not a column of {table} "
                              f"(declared: {', '.join(cols)})")
        if kind == "compare" and check.get("op") == "between" and not (
                isinstance(check["value"], list) and len(check["value"]) == 2):
            errors.append(f"claims file {path}: {label} at check.value: between needs [low, high]")
        if kind == "compare" and check.get("op") in ("in", "not_in") and not isinstance(check["value"], list):
            errors.append(f"claims file {path}: {label} at check.value: {check['op']} needs a list")
        for j, (k, cond) in enumerate(_filters(check)):
            for col, spec in cond.items():
                if isinstance(spec, dict) and "regex" in spec:
                    try:
                        re.compile(spec["regex"])
                    except re.error as e:
                        errors.append(f"claims file {path}: {label} at {k}.{col}.regex: {e}")
    return errors


def _filters(check: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out = [("check.select", check.get("select") or {})]
    for i, it in enumerate(check.get("items") or []):
        out.append((f"check.items[{i}].select", it.get("select") or {}))
    if check.get("only"):
        out.append(("check.only", check["only"]))
    return out


def _columns_named(check: Mapping[str, Any], variants: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, column) of every column a check names."""
    out = []
    for key, f in _filters(check):
        out += [(f"{key}.{c}", c) for c in f]
    for k in ("column", "by", "status_column", "show"):
        if check.get(k):
            out.append((f"check.{k}", check[k]))
    for i, c in enumerate(check.get("group_by") or []):
        out.append((f"check.group_by[{i}]", c))
    if check.get("condition"):
        out.append(("check.condition.column", check["condition"]["column"]))
    out += [(f"variants.{c}", c) for c in variants]
    return out


def load_claims(path: str | Path) -> ClaimsFile:
    """Parse and validate a claims file; :class:`ClaimsError` names the claim and the key."""
    path = Path(path)
    try:
        data = read_yaml(path, what="file")     # gibench.config's one-line errors: the file, line and column
    except ConfigError as e:
        raise ClaimsError(f"claims file {e}") from None
    errors = validate_claims(data, path)
    if errors:
        raise ClaimsError("\n".join(errors[:8]) + (f"\n... and {len(errors) - 8} more" if len(errors) > 8 else ""))
    claims = tuple(Claim(id=c["id"], where=c["where"], words=c["words"], paper=c["paper"],
                         scale=dict(c["scale"]), check=dict(c["check"]), variants=dict(c.get("variants") or {}),
                         note=c.get("note", ""), index=i) for i, c in enumerate(data["claims"]))
    return ClaimsFile(study=data["study"], paper=data["paper"], path=path,
                      tables={t: tuple(c) for t, c in data["tables"].items()}, claims=claims,
                      conventions=tuple(data.get("conventions") or ()))


def claims_dir(config: Mapping[str, Any] | None = None, basedir: str | Path | None = None) -> Path:
    """``claims.dir`` of the config (relative to the working directory), else the repository's
    ``config/claims`` (``basedir``: the workflow's directory)."""
    d = ((config or {}).get("claims") or {}).get("dir")
    if d:
        return Path(d)
    return Path(basedir) / "config" / "claims" if basedir is not None else CLAIMS_DIR


def claims_file(study: str, config: Mapping[str, Any] | None = None, basedir: str | Path | None = None) -> Path:
    return claims_dir(config, basedir) / f"{study}.yaml"


def check_config_claims(config: Mapping[str, Any], basedir: str | Path | None = None) -> dict[str, ClaimsFile]:
    """Load and validate the claims file of every configured study that has one (DAG build);
    a file whose ``study`` differs from its name is an error."""
    out = {}
    for study in (config.get("studies") or {}):
        p = claims_file(study, config, basedir)
        if not p.exists():
            continue
        cf = load_claims(p)
        if cf.study != study:
            raise _fail(p, f"at study: {cf.study!r}, but the file is named for {study!r}")
        out[study] = cf
    return out

"""The claims reports: targets, inputs and the job of rule ``claims`` (logic in gibench.claims)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import claims as C
from ..tables.render import table_formats
from .paths import R
from .runner import say

if TYPE_CHECKING:  # torch only in annotations: the DAG build imports this module without it
    import torch

CLAIMS = R + "/claims/{study}.{ext}"
TABLE_CSV = R + "/tables/{study}/{table}.csv"


def claims_studies(config: dict) -> list[str]:
    """Configured studies that have a claims file."""
    return [s for s in (config.get("studies") or {}) if C.claims_file(s, config).exists()]


def check_claims(config: dict) -> dict[str, C.ClaimsFile]:
    """Validate every configured study's claims file (DAG build); ClaimsError names claim and key."""
    return C.check_config_claims(config)


def claims_targets(config: dict) -> list[str]:
    """What `rule all` asks for: with a ``claims`` block (enabled), each study's report."""
    block = config.get("claims")
    if block is None or not block.get("enabled", True):
        return []
    return [CLAIMS.format(study=s, ext=e) for s in claims_studies(config) for e in ("md", "csv")]


def claims_inputs(config: dict, study: str) -> dict:
    """Exactly what the claims read: the claims file and the CSVs of the tables they name that
    this config makes (a table it does not make is reported as not run)."""
    cf = C.load_claims(C.claims_file(study, config))
    made = C.tables_made(config, study)
    return {"claims": str(C.claims_file(study, config)),
            "tables": [TABLE_CSV.format(study=study, table=t) for t in cf.tables_read() if t in made]}


def claims_settings(config: dict, study: str) -> dict:
    """What the verdicts depend on in the config besides the tables: the run's scale (the study's
    settings), the claims block, and whether a GPU slice has run (results/gpu/gpu_check.json: the
    report quotes it, so its appearance re-runs the report)."""
    from ..gpu_slice import GPU_DIR, state

    return {"claims": config.get("claims"), "study": config["studies"][study], "gpu_slice": state(GPU_DIR)}


def claims_job(smk: Any, device: torch.device) -> dict:
    study = smk.wildcards.study
    cf = C.load_claims(smk.input.claims)
    made = C.tables_made(smk.config, study)
    tables_dir = Path(TABLE_CSV.format(study=study, table="x")).parent
    paths, verdicts = C.write_report(cf, smk.config, tables_dir, Path(smk.output.md).parent, made,
                                     formats=table_formats(smk.output))
    n = C.counts(verdicts)
    say(f"claims {study}: {len(cf.claims)} findings, {len(verdicts)} checks: {n[C.HOLDS]} hold, {n[C.FAILS]} fail, "
        f"{n[C.NOT_CHECKABLE]} not checkable here")
    return {"holds": n[C.HOLDS], "fails": n[C.FAILS], "not_checkable": n[C.NOT_CHECKABLE]}

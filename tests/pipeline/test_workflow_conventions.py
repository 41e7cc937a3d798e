"""Workflow conventions (issue 24, item 5): `snakemake --lint` reports nothing but the one
justified lint, `snakefmt --check` passes on Snakefile + rules/*.smk, compute rules have a
`benchmark:`, and the repository carries a LICENSE matching pyproject.toml, a CITATION.cff naming
the three papers and a config/README.md describing every top-level config key."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workflow_helpers import ROOT, snakemake_bin

# lint title -> why it stays (the same justification is a comment in the Snakefile)
JUSTIFIED_LINTS = {
    "Specify a conda environment or container for each rule.":
        "one environment for every rule: a venv (make venv / make venv-gpu) or the container of "
        "envs/Dockerfile, envs/gibench.def (Snakefile comment, README 'Running on a cluster')",
}
COMPUTE_RULES = {"attack", "evaluate", "significance", "gradient", "fl_train", "lm_pretrain", "overhead",
                 "sd_gradient", "sd_attack", "sd_evaluate", "cs_generator", "cs_gradient", "cs_attack", "cs_evaluate",
                 "cs_fl",
                 # group_slots: one job per ten victim slots (gibench.pipeline.slot_groups)
                 "attack_decade", "sd_gradient_decade", "sd_attack_decade", "cs_gradient_decade", "cs_attack_decade",
                 "gradient_decade", "significance_decade",
                 # and the first n slots of a partial decade
                 "attack_decade_part", "sd_gradient_decade_part", "sd_attack_decade_part", "cs_gradient_decade_part",
                 "cs_attack_decade_part"}


def parse_lint(text: str) -> list[tuple[str, str]]:
    """(item, lint title) pairs of `snakemake --lint`'s text output (its JSON mode is not wired
    to the command line in Snakemake 9.27)."""
    out, item = [], None
    for line in text.splitlines():
        m = re.match(r"Lints for (.+?):$", line)
        if m:
            item = m.group(1)
            continue
        m = re.match(r"    \* (.+?):?$", line)
        if m and item is not None:
            out.append((item, m.group(1).rstrip(":")))
    return out


def test_parse_lint_reads_snakemakes_format():
    text = ("Lints for snakefile /x/rules/data.smk:\n    * Path composition with '+' in line 41:\n"
            "      This becomes quickly unreadable.\n\nLints for rule a (line 3, /x/rules/a.smk):\n"
            "    * Specify a conda environment or container for each rule.:\n      This way ...\n")
    assert parse_lint(text) == [("snakefile /x/rules/data.smk", "Path composition with '+' in line 41"),
                                ("rule a (line 3, /x/rules/a.smk)",
                                 "Specify a conda environment or container for each rule.")]


@pytest.mark.slow
def test_snakemake_lint_has_only_justified_lints(tmp_path):
    proc = subprocess.run([snakemake_bin(), "--lint", "--snakefile", str(ROOT / "Snakefile"), "--directory",
                           str(tmp_path), "--configfile", str(ROOT / "config" / "config.yaml")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    lints = parse_lint(text)
    assert lints or "Congratulations" in text, text[-3000:]
    unjustified = sorted({f"{item}: {title}" for item, title in lints if title not in JUSTIFIED_LINTS})
    assert not unjustified, "unjustified lints (fix them, or justify them here and in the Snakefile):\n" + \
        "\n".join(unjustified)


def test_snakefmt_check():
    exe = shutil.which("snakefmt") or str(Path(sys.executable).parent / "snakefmt")
    if not Path(exe).exists():
        pytest.skip("snakefmt is not installed (it is in the test extra: pip install -e '.[test]')")
    files = [str(ROOT / "Snakefile"), *sorted(str(p) for p in (ROOT / "rules").glob("*.smk"))]
    proc = subprocess.run([exe, "--check", *files], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, ("snakefmt would reformat (run `snakefmt Snakefile rules/`):\n"
                                  + (proc.stdout + proc.stderr)[-4000:])


def test_compute_rules_have_benchmark_and_logs():
    text = "\n".join(p.read_text() for p in sorted((ROOT / "rules").glob("*.smk")))
    rules = re.split(r"\n\s*rule (\w+):", text)
    bodies = dict(zip(rules[1::2], rules[2::2]))
    assert COMPUTE_RULES <= set(bodies), COMPUTE_RULES - set(bodies)
    for name in COMPUTE_RULES:
        body = re.split(r"\n(?:rule |ruleorder|localrules|if |def |#)", bodies[name])[0]
        assert "benchmark:" in body, name
        assert re.search(r'log:\n\s+"logs/[^"]+\.json",\n\s+out="logs/[^"]+\.log"', body), name


def test_license_matches_pyproject():
    import tomllib
    lic = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    name = lic["text"] if isinstance(lic, dict) else lic
    assert name == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text and 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_citation_names_the_three_papers():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["title"] and cff["message"]
    refs = {r["title"]: r for r in cff["references"]}
    # titles and first authors as printed on the papers' first pages (/work/shared/papers)
    want = {
        "Evaluating Selective Encryption Against Gradient Inversion Attacks": "Gu",
        "Combining Stochastic Defenses to Resist Gradient Inversion: An Ablation Study": "Scheliga",
        "Concealing Sensitive Samples against Gradient Leakage in Federated Learning": "Wu",
    }
    assert set(want) <= set(refs)
    for title, first in want.items():
        assert refs[title]["authors"][0]["family-names"] == first, title


def test_config_readme_describes_every_top_level_key():
    from gibench.config import load_schema
    text = (ROOT / "config" / "README.md").read_text()
    schema = load_schema()
    keys = list(schema["properties"]) + list(schema["properties"]["studies"]["properties"])
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"config/README.md does not describe {missing}"
    for f in ("config.yaml", "studies/", "paper_values/", "claims/", "schema/"):
        assert f in text, f

"""A new study is one folder of the common shape plus one registration (issue 21).

A toy study, ``toy_squares``, is written to a temporary folder in the shape of
:mod:`gibench.studies` (``__init__``, ``spec.py`` with its check, ``paths.py``, ``targets.py``,
``jobs.py``, its schema, its rules file and a 3-line workflow script) and registered by a plugin
module named in ``GIBENCH_PLUGINS`` (one :func:`gibench.studies.register_study` call).  Its block
lists numbers below a limit; its one rule writes ``scale * n**2`` for each number.  Then

* the DAG builds with it: one ``toy_square`` job per number, writing the files its targets name;
* without the plugin, the same config is refused at DAG build with the unknown-study error
  naming the key (so it is the registration that makes it work);
* a number that is not below the limit (which the toy's schema cannot say) fails at DAG build
  with the toy's own check message, naming the key;
* (slow) its job runs and writes 2 * 3**2 = 18 for ``scale: 2`` and ``n = 3``.

The fast tests check the registry against the repository: every built-in study's schema,
rules file and package exist, and the Snakefile includes study rules only through the registry.
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from gibench.schema import ConfigError, load_schema
from gibench.studies import STUDIES, register_study
from workflow_helpers import ROOT, run_with_plugin, write_config

TOY = "toy_squares"

FILES = {
    "__init__.py": '''
        """A toy study: the squares of a few numbers, each below a limit (tests/studies/test_extend_study.py)."""
        STUDY = "toy_squares"
    ''',
    "spec.py": '''
        """The toy's frozen spec (the only reader of its block) and its semantic check."""
        from dataclasses import dataclass

        from . import STUDY


        @dataclass(frozen=True)
        class ToySpec:
            numbers: tuple
            scale: float
            limit: int


        def spec(config):
            block = config["studies"][STUDY]          # validated: the schema filled the defaults
            return ToySpec(tuple(block["numbers"]), float(block["scale"]), int(block["limit"]))


        def check(config):
            s = spec(config)
            return [f"config error at studies.{STUDY}.numbers[{i}]: {n} is not below limit {s.limit} "
                    f"(the toy study's check)" for i, n in enumerate(s.numbers) if n >= s.limit]
    ''',
    "paths.py": '''
        SQUARE = "results/toy_squares/square_{n}.json"
    ''',
    "targets.py": '''
        from .paths import SQUARE
        from .spec import spec


        def targets(config):
            return [SQUARE.format(n=n) for n in spec(config).numbers]


        def square_params(config, wc):
            return {"scale": spec(config).scale}
    ''',
    "jobs.py": '''
        from gibench import io


        def square_job(smk, device):
            n = int(smk.wildcards.n)
            io.write_json(smk.output[0], {"n": n, "square": smk.params.settings["scale"] * n * n})
            return {"n": n}
    ''',
    "square.py": '''
        from toy_squares.jobs import square_job
        from gibench.pipeline.runner import run_job
        run_job(snakemake, square_job)  # noqa: F821 (injected by Snakemake)
    ''',
    "toy_squares.schema.yaml": '''
        description: a toy study (tests/studies/test_extend_study.py)
        type: object
        additionalProperties: false
        required: [numbers]
        properties:
          numbers: {type: array, items: {type: integer, minimum: 0}, minItems: 1}
          scale: {type: number, default: 1.0}
          limit: {type: integer, default: 10}
    ''',
    "toy_squares.smk": '''
        from toy_squares import paths as TOYP
        from toy_squares import targets as TOY


        rule toy_square:
            output:
                TOYP.SQUARE,
            log:
                "logs/toy_square/{n}.json",
                out="logs/toy_square/{n}.log",
            benchmark:
                "logs/toy_square/{n}.benchmark.tsv"
            wildcard_constraints:
                n="[0-9]+",
            params:
                settings=lambda wc: TOY.square_params(config, wc),
            script:
                "square.py"
    ''',
}

PLUGIN = '''
    """Registers the toy study (the one registration a new study needs)."""
    from pathlib import Path

    import toy_squares
    from toy_squares import spec, targets

    from gibench.studies import register_study

    HERE = Path(toy_squares.__file__).parent
    register_study("toy_squares", package="toy_squares", check=lambda config, _block: spec.check(config),
                   targets=targets.targets, schema=HERE / "toy_squares.schema.yaml", rules=HERE / "toy_squares.smk")
'''


def _config(numbers: list[int]) -> dict:
    return {"seed": 0, "datasets": {"cifar100": {"victims": 2}},
            "studies": {TOY: {"numbers": numbers, "scale": 2.0}}}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    pkg = tmp_path / "plugins" / TOY
    pkg.mkdir(parents=True)
    for name, text in FILES.items():
        (pkg / name).write_text(textwrap.dedent(text).lstrip())
    (tmp_path / "plugins" / "toy_study_plugin.py").write_text(textwrap.dedent(PLUGIN).lstrip())
    return tmp_path


def _snakemake(wd: Path, cfg: dict, *args: str, plugin: bool, check: bool = True) -> subprocess.CompletedProcess:
    return run_with_plugin(wd, write_config(wd, cfg), *args, plugin="toy_study_plugin" if plugin else None, cores=1,
                           check=check)


def _job_counts(out: str) -> dict[str, int]:
    """Snakemake's "Job stats" table of a dry run: rule -> number of jobs."""
    table = out[out.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def test_the_dag_builds_with_a_registered_toy_study(workdir):
    dry = _snakemake(workdir, _config([2, 3]), "-n", plugin=True)
    out = dry.stdout + dry.stderr
    assert _job_counts(out).get("toy_square") == 2, out[-3000:]
    for n in (2, 3):            # `rule all` asks for the toy's targets: one job per number
        assert f"results/toy_squares/square_{n}.json" in out, out[-3000:]
    assert "results/toy_squares/square_4.json" not in out


def test_without_its_registration_the_toy_study_is_an_unknown_key(workdir):
    proc = _snakemake(workdir, _config([2, 3]), "-n", plugin=False, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # the schema's error for a key of `studies:` that no registered study provides (as before)
    assert "config error at studies: unknown key(s) 'toy_squares'; allowed keys: " in out, out[-3000:]
    assert "rule toy_square" not in out                       # no job of it was planned


def test_a_bad_value_in_the_toy_block_fails_with_its_check(workdir):
    proc = _snakemake(workdir, _config([3, 12]), "-n", plugin=True, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config error at studies.toy_squares.numbers[1]: 12 is not below limit 10 (the toy study's check)" in out
    assert "numbers[0]" not in out                       # 3 < 10: only the bad entry is named


def test_the_toy_schema_refuses_an_unknown_key_in_its_block(workdir):
    proc = _snakemake(workdir, {**_config([3]), "studies": {TOY: {"numbers": [3], "colour": "red"}}}, "-n",
                      plugin=True, check=False)
    assert proc.returncode != 0
    assert "config error at studies.toy_squares: unknown key(s) 'colour'" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_toy_job_runs_and_writes_its_output(workdir):
    _snakemake(workdir, _config([3]), "results/toy_squares/square_3.json", plugin=True)
    assert json.loads((workdir / "results/toy_squares/square_3.json").read_text()) == {"n": 3, "square": 18.0}
    log = json.loads((workdir / "logs/toy_square/3.json").read_text())      # the runner's run record
    assert log["status"] == "ok" and log["rule"] == "toy_square"


# ---- the registry against the repository (fast, in-process) ----

def test_every_builtin_study_is_registered_with_its_files():
    schemas = sorted(p.name[: -len(".schema.yaml")] for p in (ROOT / "config/schema/studies").glob("*.schema.yaml"))
    assert STUDIES.names() == schemas          # one registration per study schema in the repository
    for study in STUDIES.in_order():
        assert Path(study.schema_path(ROOT / "config/schema")).is_file(), study
        assert Path(study.rules_path(ROOT)).is_file(), study
        assert importlib.util.find_spec(study.package) is not None, study


def test_the_snakefile_includes_study_rules_only_through_the_registry():
    text = (ROOT / "Snakefile").read_text()
    literal = set(re.findall(r'^include: "(rules/[\w.]+\.smk)"', text, re.M))
    registered = set(STUDIES.rules_files())
    assert not literal & registered, literal & registered
    # every rules file is included: literally (the shared stages) or as a study's
    on_disk = {f"rules/{p.name}" for p in (ROOT / "rules").glob("*.smk")}
    assert on_disk == literal | registered, on_disk ^ (literal | registered)


def test_load_schema_merges_a_registered_study_schema(tmp_path):
    toy = tmp_path / "toy.schema.yaml"
    toy.write_text("type: object\nproperties: {n: {type: integer, default: 4}}\n")
    root = ROOT / "config/schema/config.schema.yaml"
    props = load_schema(root, {"toy": toy})["properties"]["studies"]["properties"]
    assert props["toy"]["properties"]["n"]["default"] == 4
    assert "toy" not in load_schema(root)["properties"]["studies"]["properties"]
    # the built-ins as registered are the files load_schema finds anyway
    assert load_schema(root, STUDIES.schema_files()) == load_schema(root)
    with pytest.raises(ConfigError, match="study 'stochastic_defenses' has two schema files"):
        load_schema(root, {"stochastic_defenses": toy})
    with pytest.raises(ConfigError, match="registered schema file .*missing.schema.yaml does not exist"):
        load_schema(root, {"toy": tmp_path / "missing.schema.yaml"})


def test_register_study_refuses_a_name_that_cannot_be_a_wildcard_value():
    with pytest.raises(ValueError, match="lower-case letters"):
        register_study("Toy-1", package="x", check=lambda c, b: [], targets=lambda c: [])
    with pytest.raises(ValueError, match="registered twice"):
        register_study("stochastic_defenses", package="x", check=lambda c, b: [], targets=lambda c: [])
    assert "Toy-1" not in STUDIES

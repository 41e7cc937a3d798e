"""What a job Snakemake spawns runs and prints: the checkout's own src (not the venv's installed
copy), its stdout/stderr in its `out` log, its benchmark file, no "Shell command: None"."""
import json
import os
import subprocess

import pytest

from workflow_helpers import MICRO, ROOT, snakemake_bin, write_config

TARGET = "results/models/selective_encryption/cifar100/lenet/init.safetensors"


@pytest.mark.slow
def test_script_job_imports_the_checkout_and_logs_its_output(tmp_path):
    cfg = write_config(tmp_path, MICRO)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a fresh shell would have it
    env["PATH"] = str(ROOT / ".venv" / "bin") + os.pathsep + env.get("PATH", "")
    proc = subprocess.run([snakemake_bin(), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(cfg), "--cores", "1", TARGET],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = tmp_path / "logs/model/selective_encryption/cifar100/lenet"
    rec = json.loads(log.with_suffix(".json").read_text())
    # the job imported gibench from the checkout whose Snakefile ran, whatever the venv has installed
    assert rec["gibench_path"] == str(ROOT / "src" / "gibench")
    assert "model lenet for cifar100" in log.with_suffix(".log").read_text()
    bench = log.with_suffix(".benchmark.tsv").read_text().splitlines()
    assert bench[0].split("\t")[:3] == ["s", "h:m:s", "max_rss"] and len(bench) == 2
    assert "Shell command: None" not in proc.stdout + proc.stderr

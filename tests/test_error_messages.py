"""Errors name the file and the line, in one line that says what to do (issue 26, item 4).

Snakemake reads a ``--configfile`` before any workflow code runs (and reports a YAML syntax
error without file, line or column, a missing file with a traceback): ``gibench check-config``
is what can say more, and ``gibench.config.load`` is what it runs.  Independent facts: the
line and column of a syntax error are where the test put it; a truncated bundled file is
one the test truncated; ENOSPC is injected where the operating system would raise it.
"""
from __future__ import annotations

import errno
import os
import shutil

import pytest
import torch

from gibench import cli, io
from gibench.config import ConfigError, load


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    p = tmp_path / "study.yaml"
    p.write_text("seed: 1\ndatasets:\n  cifar100: {victims: 2\nstudies: {}\n")     # unclosed brace, line 3
    with pytest.raises(ConfigError) as e:
        load(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:4:8: not valid YAML")          # where the parser gives up: "studies:" on line 4
    assert "studies: {}" in msg and "^" in msg


def test_tab_in_indentation_names_its_line(tmp_path):
    p = tmp_path / "study.yaml"
    p.write_text("seed: 1\ndatasets:\n\tcifar100: {victims: 2}\n")
    with pytest.raises(ConfigError, match=rf"^{p}:3:1: not valid YAML.*'\\t'"):
        load(p)


def test_check_config_says_it_in_one_line_each(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [\n")
    missing = tmp_path / "missing.yaml"
    assert cli.main(["check-config", str(bad), str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:1: not valid YAML" in err
    assert f"{missing}: config file not found" in err and "Traceback" not in err


def test_check_config_runs_the_dag_build_checks(tmp_path, capsys, root):
    p = tmp_path / "c.yaml"
    p.write_text("datasets: {cifar100: {victims: 2}}\nstudies:\n  selective_encryption:\n"
                 "    cases: [{dataset: cifar100, model: lenet}]\n    victims: 1\n"
                 "    attacks: {ig: {params: {lr: fast}}}\n")
    assert cli.main(["check-config", str(p)]) == 1
    assert f"{p}: config error at studies.selective_encryption.attacks.ig.params.lr: 'fast'" in capsys.readouterr().err
    assert cli.main(["check-config", str(root / "config" / "studies" / "concealed_samples.yaml")]) == 0


# ------------------------------------------------------------------ damaged bundled resources

@pytest.fixture()
def bundled_copy(tmp_path, resources):
    dst = tmp_path / "resources" / "data" / "cifar100"
    shutil.copytree(resources / "data" / "cifar100", dst)
    return tmp_path / "resources"


def test_truncated_bundled_file_names_it_and_how_to_restore_it(bundled_copy):
    # before: a bare UnpicklingError (the slice had no digest in its PROVENANCE.jsonl)
    from gibench.datasets import DATASETS, DatasetUnavailable

    f = bundled_copy / "data" / "cifar100" / "test_first916"
    f.write_bytes(f.read_bytes()[: 100_000])
    with pytest.raises(DatasetUnavailable) as e:
        DATASETS.get("cifar100").load("bundled", "test", bundled_copy)
    msg = str(e.value)
    assert msg.startswith(str(f)) and f"git checkout -- {f}" in msg and "\n" not in msg


def test_unreadable_bundled_file_without_a_digest_still_names_it(bundled_copy):
    from gibench.datasets import DatasetUnavailable
    from gibench.datasets.vision import read_cifar_pickle

    f = bundled_copy / "data" / "cifar100" / "test_first916"
    f.write_bytes(f.read_bytes()[:5000])
    with pytest.raises(DatasetUnavailable, match=rf"^{f}: cannot read this bundled file \(UnpicklingError"):
        read_cifar_pickle(f, b"fine_labels")


def test_every_bundled_data_file_the_readers_open_has_a_digest(resources):
    import json

    for folder, files in {"cifar100": ["test_first916", "meta"], "cifar10": ["test_batch_first1017", "batches.meta"],
                          "mnist": ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]}.items():
        prov = resources / "data" / folder / "PROVENANCE.jsonl"
        have = {json.loads(ln)["file"] for ln in prov.read_text().splitlines() if ln.strip()}
        assert set(files) <= have, (folder, set(files) - have)


# ------------------------------------------------------------------ full disk

def _no_space(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_on_a_tensor_write_names_the_path_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "results" / "gradients" / "s000.safetensors"
    monkeypatch.setattr(io.os, "fsync", _no_space)          # the write reaches the disk: ENOSPC there
    with pytest.raises(io.DiskFull) as e:
        io.save_tensors(target, {"x": torch.zeros(4)}, {"rule": "t"})
    msg = str(e.value)
    assert msg.startswith(f"{target}: no space left on the device") and "run again" in msg
    assert list(target.parent.iterdir()) == []               # no temporary file left behind


def test_full_disk_inside_pyarrow_names_the_path(tmp_path, monkeypatch):
    # pyarrow reports ENOSPC as an OSError whose text carries the errno, not as e.errno
    def arrow_full(*_a, **_k):
        raise OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(io.pq, "write_table", arrow_full)
    target = tmp_path / "rows.parquet"
    with pytest.raises(io.DiskFull, match=rf"^{target}: no space left"):
        io.save_table(target, [{"a": 1}], {"rule": "t"})
    assert not any(tmp_path.iterdir())

"""One attack job runs all restarts of a case (issue 23, item 1): rule ``attack_restarts``.

A real micro run (LeNet/CIFAR-100, one victim, grad at ratio 0.3, IG with 3 restarts of 6
iterations in float64).  Checked against independent computations: each restart's artifact
equals a direct ``ATTACKS["ig"]`` call with the seed the one-restart job derived (study seed,
"attack", the case's wildcards with ``rep``), exactly when the restarts run one after another
and to 1e-9 when they run vectorised; replaying a record re-makes the job's files byte for
byte; the job count drops from one per restart to one per case."""
from __future__ import annotations

import copy
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from workflow_helpers import MICRO, ROOT, run_snakemake, write_config

pytestmark = pytest.mark.slow
torch.set_num_threads(1)   # as the jobs run (CPU reductions depend on the thread count)

STUDY, DS, MODEL, SLOT, METRIC, RATIO = "selective_encryption", "cifar100", "lenet", "s000", "grad", "r0.300"
REPS = 3
BASE = f"results/attacks/{STUDY}/{DS}/{MODEL}/{SLOT}/{METRIC}/{RATIO}/ig"


def _cfg(vectorise: bool) -> dict:
    cfg = copy.deepcopy(MICRO)
    cfg["studies"][STUDY].update({
        "significance": {"metrics": [METRIC], "ratios": [0.3], "cost_metrics": [METRIC]},
        "attacks": {"ig": {"restarts": REPS, "vectorise_restarts": vectorise,
                           "params": {"iterations": 6, "dtype": "float64"}}},
        "overhead": {"enabled": False}})
    return cfg


def _targets() -> list[str]:
    # one file per restart: the reconstruction carries its loss trace
    return [f"{BASE}/rep{i}.safetensors" for i in range(REPS)]


def _direct(wd: Path, cfg: dict) -> list[tuple[torch.Tensor, list[dict]]]:
    """Each restart (reconstruction, trace rows) as the one-restart job computed it, called here
    without the pipeline."""
    from gibench import io
    from gibench.attacks import ATTACKS
    from gibench.datasets import DATASETS
    from gibench.masks import load_mask
    from gibench.pipeline.jobs_attack import visible_from_mask
    from gibench.pipeline.jobs_data import model_for
    from gibench.seeds import derive_seed
    import json

    old = os.getcwd()
    os.chdir(wd)
    try:
        ds = DATASETS.get(DS)
        net = model_for(cfg, STUDY, DS, MODEL, f"results/models/{STUDY}/{DS}/{MODEL}/init.safetensors")
        shared, _ = io.load_tensors(f"results/gradients/{STUDY}/{DS}/{MODEL}/{SLOT}.safetensors")
        know = json.loads(Path(f"results/gradients/{STUDY}/{DS}/{MODEL}/{SLOT}.knowledge.json").read_text())
        mask, _ = load_mask(f"results/masks/{STUDY}/{DS}/{MODEL}/{SLOT}/{METRIC}/{RATIO}.safetensors")
        vis = visible_from_mask(mask, shared)
        shared = {n: torch.where(vis[n], g, torch.zeros_like(g)) for n, g in shared.items()}
        # the seed as it was derived before the wildcard {metric} became {significance} (issue 21):
        # seeds still hash the significance metric under the name "metric" (gibench.wildcards)
        wc = dict(study=STUDY, dataset=DS, model=MODEL, slot=SLOT, metric=METRIC, ratio=RATIO, attack="ig")
        out = []
        for rep in range(REPS):
            seed = derive_seed(cfg["seed"], "attack", **wc, rep=str(rep))
            r = ATTACKS.get("ig")(net, shared, vis, input_shape=(know["batch_size"], *know["input_shape"]),
                                  mean=ds.mean, std=ds.std, labels=torch.as_tensor(know["labels"]),
                                  cfg=cfg["studies"][STUDY]["attacks"]["ig"]["params"], seed=seed)
            out.append((r.x.float(), r.trace))
        return out
    finally:
        os.chdir(old)


def _load(wd: Path) -> list[tuple[torch.Tensor, dict]]:
    from gibench import io

    return [io.load_tensors(str(wd / f"{BASE}/rep{i}.safetensors")) for i in range(REPS)]


@pytest.fixture(scope="module")
def vec_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("restarts_vec")
    cfg = _cfg(True)
    proc = run_snakemake(wd, write_config(wd, cfg), *_targets())
    return wd, cfg, proc.stdout + proc.stderr


def test_one_job_per_case_writes_every_restart(vec_run):
    wd, _, log = vec_run
    stats = dict(re.findall(r"^(attack\w*)\s+(\d+)$", log, re.M))
    assert stats == {"attack_restarts": "1"}, stats
    assert sorted(p.name for p in (wd / BASE).iterdir() if not p.name.startswith(".")) == \
        [f"rep{i}.safetensors" for i in range(REPS)]


def test_vectorised_restarts_match_the_one_restart_computation(vec_run):
    wd, cfg, _ = vec_run
    got = _load(wd)
    ref = _direct(wd, cfg)
    from gibench import io

    for rep, ((t, rec), (x, trace)) in enumerate(zip(got, ref)):
        assert rec["attack"]["restart"] == rep and rec["attack"]["vectorised_restarts"] == REPS
        assert torch.allclose(t["x"].double(), x.double(), atol=1e-6, rtol=0), (t["x"] - x).abs().max()
        # the artifact's trace is the restart's: 6 iterations, one row each, the same losses
        back = io.load_trace(str(wd / f"{BASE}/rep{rep}.safetensors"))
        assert back.column("iteration").to_pylist() == [r["iteration"] for r in trace] == list(range(6))
        assert torch.allclose(torch.tensor(back.column("loss").to_pylist()), torch.tensor([r["loss"] for r in trace]),
                              rtol=1e-6, atol=0)
    assert (ref[0][0] - ref[1][0]).abs().max() > 0.1        # distinct seeds per restart


def test_replaying_a_record_remakes_the_job_byte_for_byte(vec_run, tmp_path):
    from gibench.pipeline.replay import replay

    wd, cfg, _ = vec_run
    before = [(wd / f"{BASE}/rep{i}.safetensors").read_bytes() for i in range(REPS)]
    _, rec = _load(wd)[1]
    work = tmp_path / "replay"
    shutil.copytree(wd, work, symlinks=True)
    for i in range(REPS):
        (work / f"{BASE}/rep{i}.safetensors").unlink()
    old = os.getcwd()
    os.chdir(work)
    try:
        replay(rec, yaml.safe_load((work / "config.yaml").read_text()))
    finally:
        os.chdir(old)
    from gibench import io

    for i in range(REPS):
        a, _ = io.load_tensors(str(work / f"{BASE}/rep{i}.safetensors"))
        b, _ = _load(wd)[i]
        assert torch.equal(a["x"], b["x"]), i
    assert before[0] != b""


def test_sequential_restarts_equal_the_one_restart_jobs_exactly(vec_run, tmp_path):
    wd0, _, _ = vec_run
    wd = tmp_path / "seq"
    shutil.copytree(wd0, wd, symlinks=True)
    cfg = _cfg(False)
    cfg["resources_dir"] = str(ROOT / "resources")
    cfg["hub_dir"] = str(wd0 / "hub")
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = run_snakemake(wd, wd / "config.yaml", *_targets())
    # the changed setting re-runs the attack job (its params), nothing upstream
    assert re.search(r"^attack_restarts\s+1$", proc.stdout + proc.stderr, re.M)
    assert not re.search(r"^(gradient|masks|model|data)\s+\d+$", proc.stdout + proc.stderr, re.M)
    ref = _direct(wd, cfg)
    from gibench import io

    for rep, ((t, rec), (x, trace)) in enumerate(zip(_load(wd), ref)):
        assert "restart" not in rec["attack"] and rec["wildcards"]["rep"] == str(rep)
        assert torch.equal(t["x"], x), rep
        assert io.load_trace(str(wd / f"{BASE}/rep{rep}.safetensors")).to_pylist() == trace, rep

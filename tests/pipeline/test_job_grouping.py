"""Fewer, larger jobs (issue 23): which attack outputs each evaluation job reads, the order of
the gathered metric rows, and which attacks run all their restarts in one job.

Independent facts: the per-slot evaluation inputs are exactly the per-restart artifacts the
one-job-per-restart layout had (every (attack, case, restart) once, nothing else), and the
gathered rows come back in the old order (attack by attack, case by case, restart by restart)
whatever order the slot files are read in."""
import copy
from types import SimpleNamespace

import pyarrow as pa
import pytest

from gibench.config import validate
from gibench.pipeline import paths as P
from gibench.pipeline import targets as T
from gibench.pipeline.jobs_tables import order_metric_rows
from gibench.studies.selective_encryption import targets as SE
from workflow_helpers import MICRO, ROOT


@pytest.fixture(scope="module")
def cfg():
    c = copy.deepcopy(MICRO)
    c["resources_dir"] = str(ROOT / "resources")
    c["hub_dir"] = str(ROOT / "resources" / "hub")
    c["datasets"]["cifar100"]["victims"] = 2
    c["studies"]["selective_encryption"].update({
        "victims": 2,
        "significance": {"metrics": ["grad", "random"], "ratios": [0.0, 0.3, 1.0], "cost_metrics": ["grad"]},
        "attacks": {"ig": {"restarts": 3, "params": {"iterations": 5}},
                    "ig_fast": {"type": "ig", "restarts": 1, "params": {"iterations": 5}},
                    "ig_two": {"type": "ig", "restarts": 2, "params": {"iterations": 5}}},
        "overhead": {"enabled": False}})
    return validate(c)


def _old_attack_files(cfg):
    """The per-restart artifacts of the old layout: (attack, case, rep) for every case."""
    out = []
    for attack, entry in cfg["studies"]["selective_encryption"]["attacks"].items():
        for st, d, m, s, me, r in SE.attack_cases(cfg, attack):
            out += [P.fmt(P.ATTACK, study=st, dataset=d, model=m, slot=s, significance=me, ratio=r, attack=attack, rep=k)
                    for k in range(entry["restarts"])]
    return out


def test_each_slot_job_reads_exactly_its_attack_outputs(cfg):
    files = SE.metric_files(cfg, "selective_encryption")
    assert files == [f"results/metrics/selective_encryption/cifar100/lenet/s00{i}.parquet" for i in (0, 1)]
    seen = []
    for slot in ("s000", "s001"):
        wc = SimpleNamespace(study="selective_encryption", dataset="cifar100", model="lenet", slot=slot)
        paths = SE.slot_attack_paths(cfg, wc)
        assert all(f"/{slot}/" in p for p in paths)
        seen += paths
    old = _old_attack_files(cfg)
    assert sorted(seen) == sorted(old) and len(set(seen)) == len(seen)
    # 3 attacks x (metrics grad, random at 0.3 + 'any' at 0 and 1) x restarts (3 + 1 + 2) per slot
    assert len(old) == 2 * 4 * (3 + 1 + 2)


def test_restart_groups_split_attacks_by_restart_count(cfg):
    assert SE.restart_groups(cfg) == {1: ["ig_fast"], 2: ["ig_two"], 3: ["ig"]}
    assert T.attack_choice([]) == "(?!)"


def test_gathered_rows_come_back_in_the_old_order(cfg):
    old = []
    for path in _old_attack_files(cfg):
        parts = path.split("/")
        old.append({"study": parts[2], "dataset": parts[3], "model": parts[4], "slot": parts[5], "metric": parts[6],
                    "ratio": float(parts[7][1:]), "attack": parts[8], "restart": int(parts[9][3:].split(".")[0])})
    # the slot jobs write slot by slot (s001 first here), each in its own order
    shuffled = sorted(old, key=lambda r: (r["slot"] != "s001", r["slot"]))
    got = order_metric_rows(pa.Table.from_pylist(shuffled), cfg).to_pylist()
    assert got == old
    assert got != shuffled          # the check had something to reorder


def test_one_restart_view_gives_a_restart_what_a_one_restart_job_gets():
    from gibench.pipeline.jobs_attack import one_restart
    from gibench.pipeline.replay import Files, Wildcards

    recons = [f"a/rep{i}.safetensors" for i in range(3)]      # one file per restart, its trace inside
    smk = SimpleNamespace(input=Files({"mask": "m.safetensors", "prior": "p.pth"}), config={"seed": 1},
                          params=SimpleNamespace(attack={}), wildcards=Wildcards({"study": "s", "attack": "lamp"}),
                          output=Files({"recon": recons}), log=["l.json"], rule="attack_restarts",
                          threads=1)
    view = one_restart(smk, 2)
    assert dict(view.wildcards) == {"study": "s", "attack": "lamp", "rep": "2"} and view.wildcards.rep == "2"
    assert view.output.recon == recons[2] and len(view.output) == 1
    assert view.input.prior == "p.pth" and view.config is smk.config

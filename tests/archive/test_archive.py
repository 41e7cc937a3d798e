"""Archive and verify (issue 8), and complete provenance of every artifact of the micro run.

Independent facts used: sha256 recomputed here with hashlib over the archive's members; the
sha256 a record names for an input equals the input's bytes; a flipped byte in any member is
found by the manifest, a flipped byte under a consistently rewritten manifest by the
provenance chain and by re-running the job; the config snapshot reads back to the digest
every record names.
"""
from __future__ import annotations

import hashlib
import io as _io
import json
import os
import tarfile
from pathlib import Path

import pytest
import yaml

from gibench import archive, cli
from gibench.archive.compare import _first_line_diff
from gibench.provenance import digest_obj, missing_fields, read_any_record
from provenance_micro import STUDY, TABLES, micro_run

pytestmark = pytest.mark.slow

METRIC_FILE = f"results/metrics/{STUDY}/cifar100/lenet/s000.parquet"
RECON = f"results/attacks/{STUDY}/cifar100/lenet/s000/grad/r0.300/ig/rep0.safetensors"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return micro_run(tmp_path_factory)


@pytest.fixture(scope="module")
def archived(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("archive") / "run.tar.gz"
    assert cli.main(["archive", "-o", str(out), "--directory", str(run_dir)]) == 0
    return out


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _rewrite(src: Path, dst: Path, change) -> None:
    """A copy of an archive with ``change(members)`` applied to its {name: bytes}."""
    members = _members(src)
    change(members)
    with tarfile.open(dst, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, _io.BytesIO(data))


def _flip(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0x01
    return bytes(b)


def _verify(path: Path, capsys, *args: str) -> tuple[int, str]:
    rc = cli.main(["verify", str(path), *args])
    return rc, capsys.readouterr().out


# ------------------------------------------------------------------ provenance of every artifact

def _artifacts(run: Path) -> list[Path]:
    out = []
    for p in sorted((run / "results").rglob("*")):
        rel = p.relative_to(run).as_posix()
        if p.is_file() and not rel.endswith(".prov.json") and not rel.startswith("results/configs/"):
            out.append(p)
    return out


def test_every_artifact_has_a_complete_record(run_dir):
    arts = _artifacts(run_dir)
    assert len(arts) > 30
    cwd = os.getcwd()
    os.chdir(run_dir)
    try:
        for p in arts:
            rel = p.relative_to(run_dir).as_posix()
            rec = read_any_record(rel)
            assert missing_fields(rec) == [], rel
            assert rec.get("job") and ":" in rec["job"], rel
            # the inputs' digests are the sha256 of their bytes
            for inp, d in rec["inputs"].items():
                if Path(inp).is_file():
                    assert hashlib.sha256(Path(inp).read_bytes()).hexdigest() == d, (rel, inp)
            # the config it names is on disk, verbatim
            snap = Path("results/configs") / f"{rec['config_digest']}.yaml"
            assert digest_obj(yaml.safe_load(snap.read_text())) == rec["config_digest"], rel
            # the volatile half (start/end, host, SLURM job id) is in the log the record names
            log = json.loads(Path(rec["log_files"][0]).read_text())
            assert {"start", "end", "host", "slurm_job_id", "status"} <= set(log), rel
            assert log["status"] == "ok"
    finally:
        os.chdir(cwd)
    # tables and figures carry their record next to them
    for t in TABLES:
        for ext in ("csv", "md"):
            assert (run_dir / f"results/tables/{STUDY}/{t}.{ext}.prov.json").exists()
    assert list((run_dir / f"results/figures/{STUDY}").glob("*.png.prov.json"))


def test_provenance_command_shows_record_and_run(run_dir, capsys):
    cwd = os.getcwd()
    os.chdir(run_dir)
    try:
        assert cli.main(["provenance", f"results/tables/{STUDY}/table5.md", RECON]) == 0
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    rec = json.loads((run_dir / f"results/tables/{STUDY}/table5.md.prov.json").read_text())
    assert f"sha256 {rec['config_digest']}" in out and f"results/configs/{rec['config_digest']}.yaml" in out
    assert "rule          table" in out and "rule          attack" in out
    assert "run           20" in out and "SLURM job" in out        # start time from the log
    assert f"results/metrics/{STUDY}/metrics.parquet  sha256" in out and "matches" in out


def test_provenance_command_names_a_file_without_record(tmp_path, capsys):
    f = tmp_path / "plain.csv"
    f.write_text("a,b\n")
    assert cli.main(["provenance", str(f)]) == 1
    assert "plain.csv.prov.json" in capsys.readouterr().err


# ------------------------------------------------------------------ archive

def test_archive_holds_workflow_config_environment_results_and_manifest(archived, run_dir):
    members = _members(archived)
    manifest = json.loads(members["ARCHIVE/MANIFEST.json"])
    # the manifest's own digest is the archive id
    assert members["ARCHIVE/MANIFEST.sha256"].split()[0].decode() == hashlib.sha256(
        members["ARCHIVE/MANIFEST.json"]).hexdigest()
    # every other member is listed with its sha256, nothing else is listed
    assert set(manifest["files"]) == set(members) - {"ARCHIVE/MANIFEST.json", "ARCHIVE/MANIFEST.sha256"}
    for name, data in members.items():
        if name in manifest["files"]:
            assert manifest["files"][name] == hashlib.sha256(data).hexdigest(), name
    # workflow, results, run records, Snakemake metadata
    for name in ("Snakefile", "rules/tables.smk", "src/gibench/provenance.py", "workflow/report/table.rst",
                 "config/config.yaml", RECON, METRIC_FILE, f"results/tables/{STUDY}/table5.md",
                 f"results/tables/{STUDY}/table5.md.prov.json", f"results/metrics/{STUDY}/metrics.parquet",
                 f"results/figures/{STUDY}/curves_lenet_cifar100_ig.png", "results/data/cifar100/victims.parquet",
                 "logs/attack/selective_encryption/cifar100/lenet/s000/grad/r0.300/ig/rep0.json"):
        assert name in members, name
    assert any(n.startswith(".snakemake/metadata/") for n in members)
    # the grid and traces figures read the slot's views (written by its evaluate job), not the
    # restarts' reconstructions: the views are archived, and the figures' records name them
    views = f"results/metrics/{STUDY}/cifar100/lenet/s000.views.safetensors"
    assert views in members
    for fig in ("grid_lenet_cifar100_ig", "traces_lenet_cifar100_ig_s000"):
        rec = json.loads(members[f"results/figures/{STUDY}/{fig}.png.prov.json"])
        assert rec["input_files"]["views"] == [views] and views in rec["inputs"], fig
        assert not any(p.startswith("results/attacks/") for p in rec["inputs"]), fig
    # significance scores are left out by default (their cost rows are not)
    assert not any(n.startswith("results/significance/") and n.endswith(".safetensors") for n in members)
    assert any(n.startswith("results/significance/") and n.endswith(".cost.parquet") for n in members)
    # the config: what the tables' records name, verbatim
    cfg = yaml.safe_load(members["ARCHIVE/config.yaml"])
    t5 = json.loads(members[f"results/tables/{STUDY}/table5.md.prov.json"])
    assert digest_obj(cfg) == manifest["config_digest"] == t5["config_digest"]
    assert f"results/configs/{t5['config_digest']}.yaml" in members
    # the exact environment
    import importlib.metadata as md

    env = members["ARCHIVE/environment.txt"].decode()
    assert f"torch=={md.version('torch')}" in env and f"snakemake=={md.version('snakemake')}" in env
    assert json.loads(members["ARCHIVE/environment.json"])["packages"]["numpy"] == md.version("numpy")


def test_archive_takes_every_results_directory(tmp_path):
    # generic: whatever a study writes under results/ is packed (FL runs, HE overhead, new studies)
    wd = tmp_path / "wd"
    files = {"results/fl/sd/mnist/cnn/dp/seed0/accuracy.json": b"{}",
             "results/overhead/selective_encryption/cifar100/lenet/grad.parquet": b"rows",
             "results/stochastic_defenses/anything/new.bin": b"\x00\x01",
             "results/tables/concealed_samples/table1.md": b"**Table 1**\n",
             "results/significance/se/c/m/s000/grad.safetensors": b"scores",
             "results/significance/se/c/m/s000/grad.cost.parquet": b"cost",
             "logs/fl_train/x.json": b"{}"}
    for name, data in files.items():
        (wd / name).parent.mkdir(parents=True, exist_ok=True)
        (wd / name).write_bytes(data)
    (wd / "results/tables/.table1.md.x.tmp").write_bytes(b"half-written")
    out = tmp_path / "a.tar.gz"
    archive.create(out, config={"seed": 0}, workdir=wd)
    names = set(_members(out))
    assert {n for n in files if "significance" not in n or n.endswith(".parquet")} <= names
    assert "results/significance/se/c/m/s000/grad.safetensors" not in names
    assert not any(n.endswith(".tmp") for n in names)
    archive.create(out, config={"seed": 0}, workdir=wd, include_scores=True)
    assert "results/significance/se/c/m/s000/grad.safetensors" in set(_members(out))


def test_archive_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(archive.ArchiveError, match="nothing to archive"):
        archive.create(tmp_path / "a.tar.gz", config={"seed": 0}, workdir=tmp_path)


# ------------------------------------------------------------------ verify

def test_archive_of_micro_study_verifies_clean(archived, capsys):
    rc, out = _verify(archived, capsys, "--jobs", "5")
    assert rc == 0, out
    assert "OK    manifest:" in out and "OK    configs:" in out and "OK    provenance chain:" in out
    replays = [ln for ln in out.splitlines() if " re-run on cpu" in ln]
    sampled = [ln for ln in replays if "results/tables/" not in ln and "results/figures/" not in ln]
    assert len({ln.split("rule ")[1].split()[0] for ln in sampled}) == 5, out      # five different rules
    assert all(ln.startswith("OK") for ln in replays), out
    # and, by default, every table and figure re-made from the archived rows
    for t in TABLES:
        assert f"OK    results/tables/{STUDY}/{t}.md: rule table re-run on cpu" in out, out
    assert sum(" results/figures/" in ln for ln in replays) >= 6
    assert "exact" in out or "bytes equal" in out
    assert out.strip().endswith("verdict: archive verified")


def test_flipped_byte_in_metric_file_fails_naming_it(archived, tmp_path, capsys):
    bad = tmp_path / "bad.tar.gz"
    _rewrite(archived, bad, lambda m: m.update({METRIC_FILE: _flip(m[METRIC_FILE], len(m[METRIC_FILE]) // 2)}))
    rc, out = _verify(bad, capsys, "--jobs", "0")
    assert rc == 1
    assert f"FAIL  {METRIC_FILE}: sha256" in out and "differs from the manifest" in out
    assert "MISMATCH" in out and METRIC_FILE in out.splitlines()[-1]


def test_flipped_byte_in_reconstruction_fails_naming_it(archived, tmp_path, capsys):
    bad = tmp_path / "bad.tar.gz"
    _rewrite(archived, bad, lambda m: m.update({RECON: _flip(m[RECON], len(m[RECON]) - 3)}))
    rc, out = _verify(bad, capsys, "--jobs", "0")
    assert rc == 1
    assert f"FAIL  {RECON}: sha256" in out
    # and the rows computed from it no longer match what their record says they were made from
    assert f"was made from {RECON}" in out


def test_flipped_byte_in_manifest_fails_naming_it(archived, tmp_path, capsys):
    def flip_manifest(m):
        text = m["ARCHIVE/MANIFEST.json"]
        m["ARCHIVE/MANIFEST.json"] = _flip(text, text.index(b'"results/tables/') + 100)
    bad = tmp_path / "bad.tar.gz"
    _rewrite(archived, bad, flip_manifest)
    rc, out = _verify(bad, capsys, "--jobs", "0")
    assert rc == 1
    assert "FAIL  ARCHIVE/MANIFEST.json:" in out and "the manifest was altered" in out


def test_altered_reconstruction_under_a_rewritten_manifest_is_caught_by_replay(archived, tmp_path, capsys):
    # a forger who also rewrites the manifest: the chain and the re-run still see it
    def forge(m):
        m[RECON] = _flip(m[RECON], len(m[RECON]) - 3)          # a byte of the tensor data
        man = json.loads(m["ARCHIVE/MANIFEST.json"])
        man["files"][RECON] = hashlib.sha256(m[RECON]).hexdigest()
        m["ARCHIVE/MANIFEST.json"] = (json.dumps(man, indent=1, sort_keys=True) + "\n").encode()
        m["ARCHIVE/MANIFEST.sha256"] = (hashlib.sha256(m["ARCHIVE/MANIFEST.json"]).hexdigest() + "  MANIFEST.json\n").encode()
    bad = tmp_path / "forged.tar.gz"
    _rewrite(archived, bad, forge)
    rc, out = _verify(bad, capsys, "--only", RECON, "--jobs", "1")
    assert rc == 1
    assert "OK    manifest:" in out
    assert f"was made from {RECON}" in out
    assert f"FAIL  {RECON}: tensor data has sha256" in out          # its digest, without any re-run
    line = next(ln for ln in out.splitlines() if ln.startswith(f"FAIL  {RECON}:") and "re-run" in ln)
    assert "rule attack re-run" in line and "tensor 'x' differs" in line


def _rewrite_manifest(m: dict) -> None:
    """What a forger does after changing members: recompute the manifest and its digest."""
    man = json.loads(m["ARCHIVE/MANIFEST.json"])
    for name in man["files"]:
        man["files"][name] = hashlib.sha256(m[name]).hexdigest()
    m["ARCHIVE/MANIFEST.json"] = (json.dumps(man, indent=1, sort_keys=True) + "\n").encode()
    m["ARCHIVE/MANIFEST.sha256"] = (hashlib.sha256(m["ARCHIVE/MANIFEST.json"]).hexdigest() + "  MANIFEST.json\n").encode()


TABLE5 = f"results/tables/{STUDY}/table5"


def test_forged_table_under_a_rewritten_manifest_fails_the_default_verify(archived, tmp_path, capsys):
    # issue 26: editing a value in Table 5 and recomputing the manifest passed ("archive verified"):
    # the default replayed 4 sampled jobs, none of which read a table
    def forge(m):
        md = m[TABLE5 + ".md"].decode()
        row = next(ln for ln in md.splitlines() if ln.startswith("| IG |"))
        m[TABLE5 + ".md"] = md.replace(row, row.replace("0.14 ±", "0.41 ±")).encode()
        csv = m[TABLE5 + ".csv"].decode()
        line = next(ln for ln in csv.splitlines() if ln.startswith("ig,"))
        m[TABLE5 + ".csv"] = csv.replace(line, line.replace(",0.1406", ",0.4106")).encode()
        _rewrite_manifest(m)
    bad = tmp_path / "forged_table.tar.gz"
    _rewrite(archived, bad, forge)
    rc, out = _verify(bad, capsys)                           # the default: no option
    assert rc == 1, out
    assert "OK    manifest:" in out and "OK    provenance chain:" in out     # the forgery is consistent
    md = out.split(f"FAIL  {TABLE5}.md: ", 1)[1].split("\nOK", 1)[0].split("\nFAIL", 1)[0]
    assert "rule table re-run" in md and "line 5, column" in md
    archived_line = next(ln for ln in md.splitlines() if "archived:" in ln)
    remade_line = next(ln for ln in md.splitlines() if "re-made:" in ln)
    assert "0.41 ±" in archived_line and "0.14 ±" in remade_line       # the difference itself, shown
    caret = next(ln for ln in md.splitlines() if ln.strip() == "^")
    assert archived_line[caret.index("^")] == "4" and remade_line[caret.index("^")] == "1"
    csv_fail = next(ln for ln in out.splitlines() if ln.startswith(f"FAIL  {TABLE5}.csv:"))
    assert "column 'mean' row 0" in csv_fail or "line 2, column" in out
    assert "MISMATCH" in out.splitlines()[-1]


def test_expect_id_accepts_the_printed_id_and_refuses_another(archived, tmp_path, capsys):
    members = _members(archived)
    aid = hashlib.sha256(members["ARCHIVE/MANIFEST.json"]).hexdigest()
    rc, out = _verify(archived, capsys, "--jobs", "0", "--no-derive", "--expect-id", aid)
    assert rc == 0 and f"OK    archive id: {aid} is the expected id" in out
    other = "0" * 64
    rc, out = _verify(archived, capsys, "--jobs", "0", "--no-derive", "--expect-id", other)
    assert rc == 1 and f"FAIL  archive id: {aid} is not the expected {other}" in out
    rc, out = _verify(archived, capsys, "--jobs", "0", "--no-derive", "--expect-id", aid[:12])
    assert rc == 1 and "is not an archive id" in out


def test_flipped_tensor_byte_under_a_rewritten_manifest_is_caught_by_its_digest(archived, tmp_path, capsys):
    # without re-running anything: the tensor data no longer matches the digest recorded when written
    def forge(m):
        m[RECON] = _flip(m[RECON], len(m[RECON]) - 3)
        _rewrite_manifest(m)
    bad = tmp_path / "forged_recon.tar.gz"
    _rewrite(archived, bad, forge)
    rc, out = _verify(bad, capsys, "--jobs", "0", "--no-derive")
    assert rc == 1
    line = next(ln for ln in out.splitlines() if ln.startswith(f"FAIL  {RECON}:"))
    assert "tensor data has sha256" in line and "recorded when it was written" in line


def test_text_difference_is_shown_where_it_is_not_as_two_equal_prefixes():
    a = ("| IG | LeNet | CIFAR-100 | " + "x" * 90 + " | 0.1406 |\n").encode()
    b = ("| IG | LeNet | CIFAR-100 | " + "x" * 90 + " | 0.4106 |\n").encode()
    d = _first_line_diff(a, b)
    assert "line 1, column 123" in d
    arch = next(ln for ln in d.splitlines() if "archived:" in ln)
    rem = next(ln for ln in d.splitlines() if "re-made:" in ln)
    assert "0.1406" in arch and "0.4106" in rem and arch != rem
    assert _first_line_diff(b"a\nb\n", b"a\n").startswith("2 vs 1 lines")


def test_verify_names_a_missing_or_unreadable_archive(tmp_path, capsys):
    rc, out = _verify(tmp_path / "none.tar.gz", capsys)
    assert rc == 1 and "no such file" in out
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    rc, out = _verify(junk, capsys)
    assert rc == 1 and "not a readable archive" in out


# ------------------------------------------------------------------ comparison rules (unit level)

def _tensor_file(path: Path, x, **record) -> Path:
    from gibench import io

    io.save_tensors(path, {"x": x}, {"rule": "attack", "inputs": {}, **record})
    return path


def test_compare_is_exact_on_the_same_device_and_within_the_stated_tolerance_otherwise(tmp_path):
    import torch

    x = torch.linspace(0, 1, 50)
    a = _tensor_file(tmp_path / "a.safetensors", x)
    b = _tensor_file(tmp_path / "b.safetensors", x + 1e-7)
    ok, detail = archive.compare_file(a, b, archive.Tolerance())
    assert not ok and "tensor 'x' differs" in detail and "exact" in detail
    ok, detail = archive.compare_file(a, b, archive.Tolerance(1e-6, 0.0))
    assert ok and "within atol 1e-06" in detail
    ok, _ = archive.compare_file(a, _tensor_file(tmp_path / "c.safetensors", x + 1e-3), archive.Tolerance(1e-6, 0.0))
    assert not ok


def test_compare_checks_the_loss_trace_an_attack_artifact_carries(tmp_path):
    import torch

    from gibench import io

    x = torch.linspace(0, 1, 5)

    def art(name, losses, status="ok"):
        p = tmp_path / name
        io.save_tensors(p, {"x": x}, {"rule": "attack", "inputs": {}},
                        trace=[{"iteration": i, "loss": v, "tv": float("nan"), "status": status}
                               for i, v in enumerate(losses)])
        return p

    a = art("a.safetensors", [1.0, 0.5])
    ok, detail = archive.compare_file(a, art("b.safetensors", [1.0, 0.5]), archive.Tolerance())
    assert ok and "loss trace 2 rows x 4 columns equal" in detail          # NaN equals NaN
    ok, detail = archive.compare_file(a, art("c.safetensors", [1.0, 0.5 + 1e-9]), archive.Tolerance())
    assert not ok and "loss trace: column 'loss' row 1" in detail
    ok, detail = archive.compare_file(a, art("d.safetensors", [1.0, 0.5], "no_move"), archive.Tolerance())
    assert not ok and "column 'status'" in detail
    ok, detail = archive.compare_file(a, _tensor_file(tmp_path / "e.safetensors", x), archive.Tolerance())
    assert not ok and "only the archived file carries a loss trace" in detail


def test_directory_outputs_compare_their_files_not_snakemakes_marker(tmp_path):
    import torch

    for d in ("old", "new", "other"):
        (tmp_path / d / "r1").mkdir(parents=True)
        _tensor_file(tmp_path / d / "r1" / "global.safetensors", torch.arange(4.0) + (d == "other"))
    (tmp_path / "old" / archive.SNAKEMAKE_DIR_MARKER).write_bytes(b"")   # Snakemake's directory() marker
    ok, detail = archive.compare_file(tmp_path / "old", tmp_path / "new", archive.Tolerance())
    assert ok and detail == "1 files equal"
    ok, detail = archive.compare_file(tmp_path / "old", tmp_path / "other", archive.Tolerance())
    assert not ok and detail.startswith("r1/global.safetensors: tensor 'x' differs")
    (tmp_path / "new" / "extra.json").write_text("{}")
    ok, detail = archive.compare_file(tmp_path / "old", tmp_path / "new", archive.Tolerance())
    assert not ok and "extra.json" in detail


def test_columns_a_job_declares_unseeded_are_reported_not_compared(tmp_path):
    from gibench import io
    from gibench.provenance import UNSEEDED_KEY

    def table(name, size, n):
        io.save_table(tmp_path / name, [{"ratio": 0.1, "n_encrypted": n, "ciphertext_bytes": size}],
                      {"rule": "overhead", "inputs": {}, UNSEEDED_KEY: ["ciphertext_bytes"]})
        return tmp_path / name

    a, b = table("a.parquet", 994558, 100), table("b.parquet", 994721, 100)
    ok, detail = archive.compare_file(a, b, archive.Tolerance())
    assert ok and "ciphertext_bytes" in detail and "not compared" in detail
    ok, detail = archive.compare_file(a, table("c.parquet", 994558, 101), archive.Tolerance())
    assert not ok and "n_encrypted" in detail


def test_timing_names_count_as_measurements():
    for name in ("seconds", "attack_seconds", "l1_seconds_per_position", "iterations_per_second", "keygen_s",
                 "job_peak_rss_bytes", "ratio_client_time_to_plain"):
        assert archive.MEASUREMENT.search(name), name
    for name in ("n_encrypted", "ciphertext_bytes", "ssim", "psnr", "status"):
        assert not archive.MEASUREMENT.search(name), name


def test_measurements_in_a_record_are_reported_not_compared(tmp_path):
    import torch

    x = torch.zeros(3)
    a = _tensor_file(tmp_path / "a.safetensors", x, attack={"final_loss": 0.5, "iterations_per_second": 20.0})
    b = _tensor_file(tmp_path / "b.safetensors", x, attack={"final_loss": 0.5, "iterations_per_second": 31.0})
    ok, detail = archive.compare_file(a, b, archive.Tolerance())
    assert ok and "measured attack.iterations_per_second" in detail
    c = _tensor_file(tmp_path / "c.safetensors", x, attack={"final_loss": 0.6, "iterations_per_second": 20.0})
    ok, detail = archive.compare_file(a, c, archive.Tolerance())
    assert not ok and "record.attack.final_loss" in detail


def test_job_sample_is_seeded_and_spread_over_rules():
    jobs = [archive.Job(f"m:{r}", r, {}, [f"results/{r}/{i}"]) for r in ("attack", "metrics", "table")
            for i in range(10)]
    s1 = archive.sample_jobs(jobs, 3, seed=7)
    assert [j.outputs for j in s1] == [j.outputs for j in archive.sample_jobs(jobs, 3, seed=7)]
    assert sorted(j.rule for j in s1) == ["attack", "metrics", "table"]
    assert [j.outputs for j in s1] != [j.outputs for j in archive.sample_jobs(jobs, 3, seed=8)]
    assert len(archive.sample_jobs(jobs, None, seed=0)) == 30
    only = archive.sample_jobs(jobs, 5, seed=0, only=["results/table/*"])
    assert len(only) == 5 and {j.rule for j in only} == {"table"}

"""No machine paths in the code (issue 26, item 9): every file the project ships finds its data
relative to the repository (bundled ``resources/``), never at a fixed absolute path of one machine."""
from __future__ import annotations

import re
import subprocess
import sys

MACHINE_PATH = re.compile(r"""["'](/work/|/home/|/Users/|/scratch/|/mnt/)""")


def test_no_tracked_source_names_a_fixed_absolute_path(root):
    files = subprocess.run(["git", "ls-files", "*.py", "*.smk", "Snakefile", "*.yaml", "Makefile", "*.sh"],
                           cwd=root, capture_output=True, text=True, check=True).stdout.split()
    hits = [f"{f}:{i}: {ln.strip()}" for f in files if (root / f).is_file()
            for i, ln in enumerate((root / f).read_text(errors="replace").splitlines(), 1) if MACHINE_PATH.search(ln)]
    assert hits == [], "\n".join(hits)


def test_bench_dager_finds_its_data_in_the_bundled_resources(root):
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        import bench_dager
    finally:
        sys.path.remove(str(root / "benchmarks"))
    for rel in ("gpt2_tokenizer/encoder.json", "gpt2_tokenizer/vocab.bpe", "cola/in_domain_dev.tsv", "sst2/dev.tsv"):
        assert bench_dager._find(rel).is_relative_to(root / "resources")

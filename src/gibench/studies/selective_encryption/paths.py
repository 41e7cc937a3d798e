"""Output path patterns of the selective-encryption study's own rules (``rules/overhead.smk``;
wildcards in braces).  The shared stages' patterns (victims, weights, gradients, significance
scores, masks, attacks, metric rows, tables, figures) stay in :mod:`gibench.pipeline.paths`:
every stage rule writes under ``{study}``."""
from __future__ import annotations

from ...pipeline.paths import R

# one row per measured ratio of one (dataset, model, significance metric) (rule overhead)
OVERHEAD = R + "/overhead/{study}/{dataset}/{model}/{significance}.parquet"
# every overhead row of the study (rule gather_overhead)
ALL_OVERHEAD = R + "/overhead/{study}/he_overhead.parquet"

"""Significance metrics: a non-negative score per gradient entry; the mask encrypts the top.

Registered metrics (:data:`METRICS`), all called as
``compute_scores(name, model, x, y, grads, *, seed, params=None, loss='cross_entropy', mode='eval')``:

====================  ======================================================================
``grad``              ``|g_i|`` (paper: Grad)
``param``             ``|θ_i|`` (paper: Param)
``prodsig``           ``|g_i θ_i|`` (paper: ProdSig)
``random``            seeded U(0, 1) (control)
``sens``              exact ``‖∂g_i/∂x‖₂`` (paper: Sens), vmapped forward-over-reverse JVPs
``sens_discrete``     paper: Sens (Discrete); default ``(1/n) Σ_j |g_i(x+e_j) − g_i(x−e_j)| / 2``
``sens_probe``        ``sqrt((1/K) Σ_k ((∂g/∂x) v_k)_i²)``, ``v_k ~ N(0, I)``; Sens² error ``sqrt(2/K)``
``attn``              selector: attention layers of a transformer (paper: Attn)
``onefifth_1..5``     selector: chunk i of 32 parameter tensors, word embedding excluded (paper: OneFifth-i)
``onefifth_blocks_1..5``  selector: i-th fifth of the transformer blocks (an alternative, not the paper's)
====================  ======================================================================

Options per metric: :func:`metric_options` (checked at DAG build by
:func:`check_significance_config`).  Cost (time, peak memory): :mod:`.cost`.
"""
from __future__ import annotations

from .base import (METRICS, Context, Metric, ScoreResult, check_params, check_significance_config, compute_scores,
                   metric, metric_options)
from . import metrics as _metrics  # noqa: E402,F401  (registers grad, param, prodsig, random)
from . import sens as _sens  # noqa: E402,F401  (registers sens, sens_discrete, sens_probe)
from . import selectors as _selectors  # noqa: E402,F401  (registers attn, onefifth_1..5, onefifth_blocks_1..5)
from .selectors import (ONEFIFTH_CHUNK, SELECTORS, NoTransformerBlocks, attention_names, fifth_groups, fifth_names,
                        onefifth_chunk, transformer_blocks, word_embedding_name)
from .sens import GradientJacobian, sens_discrete_scores, sens_exact, sens_probe_estimate

__all__ = ["METRICS", "Context", "Metric", "ScoreResult", "check_params", "check_significance_config",
           "compute_scores", "metric", "metric_options",
           "SELECTORS", "ONEFIFTH_CHUNK", "NoTransformerBlocks", "attention_names", "fifth_groups", "fifth_names",
           "onefifth_chunk", "transformer_blocks", "word_embedding_name",
           "GradientJacobian", "sens_exact", "sens_discrete_scores", "sens_probe_estimate"]

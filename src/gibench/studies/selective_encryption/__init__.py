"""Study 1, selective encryption: paper A, "Selective encryption of the most significant
gradient entries" as FedML-HE proposes it -- encrypt the top fraction of a client update's
entries by a significance metric (grad, prodsig, sens, param, random; layer selectors for the
text models) and leave the rest visible; attack what is visible (IG, DLG, ... on LeNet / CNN;
LAMP and DAGER on BERT / GPT-2 over CoLA, SST-2, Rotten Tomatoes) at every ratio, and measure
what real CKKS encryption of each mask costs.  Tables 1-6 (significance metrics x ratios x
attacks, protection levels, the metrics' own cost), the layer-selector table, the curves,
traces and reconstruction grids, the HE-overhead table and cost-vs-protection figure, and the
table of the local language models the text cases may use.

Files (the common study shape, :mod:`gibench.studies`):

- ``spec.py``: the frozen spec of ``studies.selective_encryption`` (:func:`spec.spec`), the
  names it resolves (a case's model ids, where an attack runs, an attack's metrics, ratios and
  victim slots, the interior ratios, a model's Table 6 metrics) and its semantic checks
  (:func:`spec.check`)
- ``paths.py``: the output path patterns of ``rules/overhead.smk``
- ``targets.py``: the cases, the target list, and the study's rule-input functions (DAG build)
- ``jobs_overhead.py``: the HE-overhead jobs (CKKS cost per mask, its table and figure) and
  the overhead rules' input functions

The stages are the shared stage rules and jobs (``rules/data.smk``, ``gradient.smk``,
``significance.smk``, ``attack.smk``, ``tables.smk``, ``lm.smk``; :mod:`gibench.pipeline`'s
``jobs_data``, ``jobs_significance``, ``jobs_attack``, ``jobs_tables``, ``jobs_claims``,
``jobs_report``, ``runner``, ``replay``, with their text half ``jobs_text`` and the local
language models ``jobs_lm``): every stage writes under ``{study}``, with the paths of
:mod:`gibench.pipeline.paths`.  This package holds what is study 1's own.  The tables are
built by :mod:`gibench.tables.selective_encryption` (Tables 1-6), :mod:`gibench.tables.figures`
and :mod:`gibench.tables.he_overhead`.

Data flow (one rule per arrow)::

    victims (data) ─┬─────────────────────────────────────────────────────────────┐
    model ──────────┴─ gradient ─┬─ significance ─┬─ masks / masks_any ─┐         │
                                 │  (+ its cost)  │                      ├─ attack / attack_restarts (GPU jobs)
                                 │                └─ gather_cost ─┐      │         │
                                 │                                │      │    evaluate (+ victims) ─ gather_metrics
                                 └─────────── overhead ◀──────────┼──────┘                               │
                                                 │                └────────────── table / figure ◀───────┘
                                       gather_overhead ─▶ he_overhead_table / he_cost_figure (+ metrics)
    lm_pretrain ─▶ model (weights: pretrained_local), attack (LAMP's prior: pretrained_local), lm_table

A *case* is (dataset, model id): one model id per entry of ``cases[i].inits``
(``lenet@dlg_uniform``); each has ``victims`` slots.  Ratios 0 and 1 give the same mask
whatever the metric and are computed once under significance ``any``; layer selectors are
attacked once, at the smallest interior ratio.
"""
STUDY = "selective_encryption"

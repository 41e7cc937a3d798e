"""Study 2, stochastic defenses: paper B, "Combining Stochastic Defenses to Resist Gradient
Inversion" (Scheliga et al.) -- dropout, DP, gradient pruning and the PRECODE / CVB privacy
modules, alone and combined, against IG and the adaptive attacks built for each (WIIG, DPIA,
GPIA, PIG, VBIA, DIA, CDIA); Tables 1-5 and the reconstruction grid.

Files (the common study shape, :mod:`gibench.studies`):

- ``spec.py``: the frozen spec of ``studies.stochastic_defenses`` (:func:`spec.spec`), the
  names it resolves (defense combinations, an attack's settings per model, the dataset as the
  models see it) and its semantic checks (:func:`spec.check`)
- ``paths.py``: the output path patterns of ``rules/stochastic_defenses.smk``
- ``targets.py``: the cases, target list, rule-input and rule-params functions (DAG build)
- ``jobs.py``: the jobs (model weights, the client's defended gradient, the attack, evaluate,
  table, figure)

Data flow (one rule per arrow, rules in ``rules/stochastic_defenses.smk``)::

    victims ─┐
             ├─ sd_gradient ─▶ update + knowledge (server side)   + secrets (client side, separate file)
    sd_model ┘                     │                                   │ (only for attacks marked oracle)
                                   └──────────── sd_attack ◀───────────┘      (a GPU job on clusters)
                                                     │
                             sd_evaluate (+ victims) ─▶ sd_gather ─▶ sd_table / sd_figure

A *case* is (dataset, model, defense combination, attack); each has ``victims`` slots and
``restarts`` attack jobs per slot.  Combination names are keys of ``defenses`` or names joined
by '+' (``dropout+dp+prune+cvb``, parameters from ``defense_defaults``), the same names the
FedAvg runs (``fl.runs[].defenses``) use, so the accuracy columns can be looked up by them.
The tables and the grid are built by :mod:`gibench.tables.stochastic_defenses`.
"""
STUDY = "stochastic_defenses"

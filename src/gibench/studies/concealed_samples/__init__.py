"""Study 3, concealed samples: DCS² (Wu, Hayat, Zhou, Harandi, AAAI 2024) against GS, GGL,
Imprint and an adaptive attack, with DP-Gaussian, Prune, Soteria and ATS as baselines.

Files (the common study shape, :mod:`gibench.studies`):

- ``spec.py``: the frozen spec of ``studies.concealed_samples`` (:func:`spec.spec`) and its
  semantic checks (:func:`spec.check`)
- ``paths.py``: the output path patterns of ``rules/concealed_samples.smk``
- ``needs.py``: the extra inputs an attack may declare it needs, one :class:`needs.Need` each
- ``prep.py``: how the study feeds a dataset to its model, and its models (torch)
- ``targets.py``: target lists, rule-input and rule-params functions (DAG build)
- ``jobs.py``: the jobs of the attack path (public pool, priors, server model, client
  gradient, attack, evaluate, gather, tables, figure); ``jobs_fl.py``: the FedAvg accuracy jobs

Data flow (one rule per arrow; ``{server}`` is ``honest`` or ``imprint``, ``{cohort}`` is
``iid`` or ``noniid``)::

    victims (rule data) ─┬─ cs_public ─┬─ cs_class_means ─────────────┐  (adaptive attack's prior)
                         │             ├─ cs_generator ───────────────┤  (GGL's prior)
                         │             └──────────┐                   │
    init weights (rule model) ─ cs_server_model ──┼─ cs_gradient ── cs_attack ── cs_evaluate ── cs_gather
                                                  │  (shared update,   (GPU job)          │
                                                  │   knowledge,                          │
                                                  │   client secrets)       cs_fl (FedAvg accuracies)
                                                  │                                      │
                                                  └──────────────── cs_table / cs_figure ┘

Attacker boundary (DESIGN.md): ``cs_attack`` reads the model the server sent (initial
weights, or its own imprinted model plus the secrets of its block), the shared update,
the knowledge file (labels, batch size, input shape) and public priors; the client's
secrets (the sensitive image it trained on, concealed samples) reach only ``cs_evaluate``
and the figure.
"""
STUDY = "concealed_samples"

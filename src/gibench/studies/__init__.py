"""The studies, one package each in the common shape (issue 21)::

    studies/<study>/__init__.py   STUDY = "<study>"; what the study is, its files
    studies/<study>/spec.py       the typed, frozen spec built once from the validated config
                                  (the only reader of the raw study block); check(config)
    studies/<study>/paths.py      output path patterns (the constants the rules use)
    studies/<study>/targets.py    target lists, rule-input and rule-params functions
    studies/<study>/jobs*.py      the study-only job functions (workflow/scripts/<x>.py call them)

The study's rules are ``rules/<study>.smk``; its tables ``gibench.tables.<study>``.
"""
from __future__ import annotations

#: study name (the key under ``studies:`` in the config) -> its package
STUDIES: dict[str, str] = {
    "concealed_samples": "gibench.studies.concealed_samples",
    "stochastic_defenses": "gibench.studies.stochastic_defenses",
}

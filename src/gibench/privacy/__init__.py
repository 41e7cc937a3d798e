"""Privacy budgets: epsilon at a stated delta for the DP configurations the studies run.

What is accounted (sample-level DP, DP-SGD style: the guarantee protects one training sample
of a client against everything the server sees from that client):

* **Mechanism.**  Paper B's ``dp`` defense (:class:`gibench.defenses.specs.DP`, applied by
  :meth:`gibench.defenses.DefenseChain.client_gradient`): every sample's gradient is clipped
  to L2 norm tau over all parameters, the clipped gradients are summed, Xi ~ N(0, (sigma tau)^2 I)
  is added and the sum is divided by the batch size B (a public constant of the step).
  Dropout, the privacy modules (PRECODE/CVB: per-sample randomness inside each sample's
  gradient), pruning of the noisy gradient (GP) and the optimiser steps of FedAvg are
  post-processing or per-sample preprocessing and do not change the bound.
* **Neighbouring relation** (``relation``).  ``replace_one`` (default): datasets of the same
  size that differ in one sample.  Batch sizes do not change, the clipped sum moves by at
  most 2 tau, so each release is a Gaussian mechanism with noise multiplier
  (std / L2 sensitivity) sigma tau / (2 tau) = sigma / 2.  ``zero_out``: one sample replaced by
  a null sample whose clipped gradient is 0 (Kairouz et al. 2021, "Practical and private (deep)
  learning without sampling or shuffling"): sensitivity tau, noise multiplier sigma -- the
  relation DP-SGD papers' numbers usually correspond to.  Plain add/remove is not used for
  what runs here: the code divides by the actual batch size, which changes with the dataset's
  size, so add/remove is not a Gaussian mechanism.
* **Sampling.**  The FedAvg clients (:func:`gibench.fl.local_train`) shuffle their training
  shard every epoch and cut it into disjoint batches, so every sample is in exactly one
  (``drop_last``: at most one) noisy step per local epoch.  No privacy amplification by that
  shuffling is claimed (no theorem covers shuffled fixed-size batches in the RDP/PLD
  accountants; Chua et al. 2024, "How private are DP-SGD implementations?", show the
  Poisson numbers can underestimate it): ``sampling_rate`` is 1 and the guarantee composes
  one Gaussian release per epoch: ``compositions`` = rounds x local_epochs.  This is a formal
  guarantee (Gaussian mechanism + adaptive composition; the batch order is data-independent).
  The usual DP-SGD number -- Poisson subsampling at q = B / n over every local step -- is
  given as a labelled *variant* with ``guarantee: none`` (its assumption is not what runs).
* **Attacked gradient.**  The gradient the attacks invert is one release: one composition.
* **Accountants** (Google's ``dp-accounting``): ``exact`` -- the analytic Gaussian mechanism
  (Balle & Wang 2018, ``dp_accounting.gaussian_mechanism.get_epsilon_gaussian``); k Gaussian
  releases of noise multiplier s compose exactly to one of s / sqrt(k) (Dong, Roth & Su 2019),
  so this is tight; ``rdp`` -- ``dp_accounting.rdp.RdpAccountant`` (an upper bound, looser);
  ``pld`` -- ``dp_accounting.pld.PLDAccountant``, only for the Poisson variant and only where
  it is cheap (noise multiplier >= :data:`PLD_MIN_NOISE`).  ``epsilon`` is the smallest of the
  formal bounds computed (all are valid upper bounds; ``exact`` is the tight one).
* **No clipping** (the concealed-samples study's ``dp_gaussian``: N(0, std^2) added to the
  gradient, no clipping): no sensitivity bound is enforced, so no (epsilon, delta) follows from
  the mechanism: ``guarantee: none``, ``epsilon: inf`` (= no finite bound, not a measurement).
* **delta** (``delta``, default 1e-5: TF Privacy's MNIST convention, below 1/n for every client
  training set in the shipped configs; a record notes when delta >= 1/n).

Tiny noise multipliers give astronomically large epsilon (sigma = 1e-4: ~2e8 for one step);
those numbers are reported as computed.  Paper B itself reports no epsilon.

Entry points: :func:`budget` (a defense + the study's gradient/fl settings -> one record with
per-step, per-round and whole-run numbers), :func:`format_epsilon` (a table cell) and
:func:`study_budgets` (every DP configuration of a validated config).

The package, by seam: :mod:`~gibench.privacy.accounting` (settings, mechanism, accountants,
budget records) and :mod:`~gibench.privacy.configs` (the budgets of a validated config; it reads
the pipeline, the accounting does not).  This ``__init__`` is its public face: import from
``gibench.privacy``, not from the submodules.
"""
from __future__ import annotations

from .accounting import (
    ACCOUNTANTS, DEFAULTS, PLD_INTERVAL, PLD_MIN_NOISE, RELATIONS, SECRET_NOISE_NOTE, PrivacyConfigError,
    attack_budget, budget, fedavg_budget, format_epsilon, gaussian_epsilon, local_steps, mechanism_of,
    noise_multiplier, other_relation_variant, poisson_epsilon, poisson_rdp_curve, poisson_variant, settings_from)
from .configs import client_train_sizes, fl_pool_size, study_budgets, summary_rows

__all__ = [
    "ACCOUNTANTS", "DEFAULTS", "PLD_INTERVAL", "PLD_MIN_NOISE", "RELATIONS", "SECRET_NOISE_NOTE",
    "PrivacyConfigError", "attack_budget", "budget", "fedavg_budget", "format_epsilon", "gaussian_epsilon",
    "local_steps", "mechanism_of", "noise_multiplier", "other_relation_variant", "poisson_epsilon",
    "poisson_rdp_curve", "poisson_variant", "settings_from",
    "client_train_sizes", "fl_pool_size", "study_budgets", "summary_rows",
]

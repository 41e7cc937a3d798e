"""FedAvg simulation for the utility (accuracy) side of the studies.

What is simulated (McMahan et al. 2017, "Communication-efficient learning of deep networks
from decentralized data", Algorithm 1 *FederatedAveraging*):

* N clients hold disjoint shards of a training pool: an IID split (a seeded permutation cut
  into N near-equal parts, as paper B §5.1 "independent and identically distributed to those
  10 clients") or a non-IID split drawing each class's client proportions from
  Dirichlet(α) (Hsu, Qi & Brown 2019, "Measuring the effects of non-identical data
  distribution"), the usual option for DCS² Table 10's non-IID setting.
* Each client keeps a validation share of its shard (paper B: 10 %).
* In round t the server sends the global weights θ_t to the sampled clients; each runs
  ``local_epochs`` epochs of minibatch training (optimiser, lr and batch size from config,
  a fresh optimiser every round as Flower clients create it in ``fit``) and returns its
  weights; the server averages them, weighted by the clients' training-sample counts
  (``weighting: samples``, FedAvg's n_k / n; ``uniform`` is the plain mean).
* A client's minibatch gradient is whatever its *gradient function* returns: the plain
  gradient of the mean cross-entropy, or the defended gradient of
  ``gibench.defenses.DefenseChain.client_gradient`` (the same call the gradient rule makes),
  so defenses act during local training exactly as in the shared update that is attacked.
  The optimiser then applies that gradient.
* After every round the global model is evaluated: per-client validation loss (mean
  cross-entropy) and their unweighted mean over all clients ("mean validation loss over all
  clients", paper B §5.1), accuracy on the held-out test set, and accuracy on the protected
  clients' training data (DCS² Tables 1-11, "Acc (Sensitive Data)").
* Early stopping: stop once the mean validation loss has not improved (strictly lower, or by
  more than ``min_delta``) for ``patience`` consecutive rounds (paper B: 40 of at most 300).
  The *best* model is the global model of the round with the lowest mean validation loss.
* Optional server-side learning-rate schedules across rounds: ``plateau`` (the CVB reference
  config's ReduceLROnPlateau on the validation loss, factor 0.5, patience 15; PyTorch's
  semantics, relative threshold 1e-4) and ``exponential`` (DCS²'s Flower code:
  lr · 0.99^round).

Randomness: every random draw of round t (client sampling, each client's shuffling, its
dropout masks via the global torch RNG, the defense generator, evaluation-time sampling of
stochastic modules) comes from a seed derived from (run seed, purpose, round, client), so a
run resumed from the state after round t continues the same curve (bitwise on CPU with the
same thread count).

Checkpoints: the global model after every round (round 0 = the initialisation) can be kept
as safetensors (for attacks on trained models, "a model after round r"), and a resume state
(global + best weights, early-stopping/schedule state, the curve so far) is rewritten after
each round.  The job deletes the resume state once its outputs are written.

The package, by seam: :mod:`~gibench.fl.settings` (defaults, :class:`FLConfigError`),
:mod:`~gibench.fl.partition` (the clients' shards, the :class:`Pool`), :mod:`~gibench.fl.training`
(local training, aggregation, stopping, schedules), :mod:`~gibench.fl.run` (:func:`run_fedavg`,
checkpoints) and :mod:`~gibench.fl.summary` (accuracy cells for the tables).  This ``__init__`` is
its public face: import from ``gibench.fl``, not from the submodules.
"""
from __future__ import annotations

from .partition import ClientShard, Pool, make_clients, partition_dirichlet, partition_iid, split_validation
from .run import (
    CheckpointStore, FedAvgResult, Interrupted, evaluate_global, fingerprint, round_name, run_fedavg, seeded_rng)
from .settings import DEFAULTS, FLConfigError, settings_from
from .summary import REPORT_CHOICES, accuracy_rows, accuracy_summary, mean_std
from .training import (
    EarlyStopping, GradFn, RoundSchedule, fedavg_aggregate, local_train, make_optimizer, per_sample_eval,
    plain_gradient)

__all__ = [
    "DEFAULTS", "FLConfigError", "settings_from",
    "ClientShard", "Pool", "make_clients", "partition_dirichlet", "partition_iid", "split_validation",
    "EarlyStopping", "GradFn", "RoundSchedule", "fedavg_aggregate", "local_train", "make_optimizer",
    "per_sample_eval", "plain_gradient",
    "CheckpointStore", "FedAvgResult", "Interrupted", "evaluate_global", "fingerprint", "round_name", "run_fedavg",
    "seeded_rng",
    "REPORT_CHOICES", "accuracy_rows", "accuracy_summary", "mean_std",
]

"""Selective homomorphic encryption of client updates (FedML-HE style) on TenSEAL CKKS.

What a round looks like (update rule of FedML-HE, arXiv 2303.10837)::

    [W] = sum_i w_i [[M * U_i]]  +  sum_i w_i (1 - M) * U_i

* A *mask* ``M`` over the named gradient tensors (True = the entry is encrypted) is
  global: every client uses the same one and the server knows it.  Accepted forms: a
  ``dict[str, BoolTensor]`` or any object with a ``.bits`` dict (``gibench.masks.Mask``;
  its ``.names`` order is used when present, else the dict order).
* **Client** (:func:`encrypt_update`): multiplies its update by its FedAvg weight in
  plaintext (as FedML does, so the server only has to add), gathers the masked entries in
  a fixed order (mask tensor order, row-major inside a tensor, packed across tensor
  boundaries), packs them into SIMD ``ts.ckks_vector`` ciphertexts of at most N/2 slots
  each and serialises each one.  The plaintext part is the weighted update with the masked
  entries set to 0; on the wire (:meth:`EncryptedUpdate.to_bytes`) only the *unmasked*
  entries are sent, so no masked value is ever in the clear.
* **Server** (:func:`aggregate`): holds only the public context (no secret key; refused
  otherwise), adds the ciphertexts as ciphertexts and the plaintext parts in the clear.
* **Key holder** (:func:`decrypt_aggregate`): decrypts, scatters the sums into the masked
  positions and adds the plaintext sum.

Parameters (:class:`HEParams`) default to FedML's TenSEAL context (``context.pickle``):
N = 8192, coefficient moduli [60, 40, 40, 60] bits, global scale 2^52.  A 52-bit scale
with 40-bit middle primes would be a problem only for ciphertext multiplication (rescaling
by a 40-bit prime would leave a 2^64 scale); FedAvg here uses additions only (weights are
applied in plaintext before encryption), and a fresh ciphertext at the top level has
60 + 40 + 40 = 140 bits of modulus for 52-bit-scaled values, so 2^52 works.  Measured on
this project's CPU (tenseal 0.3.18): max abs error of one fresh ciphertext on values in
[-1, 1] is about 2e-12, of a 3-client sum about 5e-12 (versus about 1e-8 at scale 2^40).
The CKKS error is absolute (independent of the values' magnitude) and is far below the
float32 resolution of the returned update.

Cost (``benchmarks/bench_he.py``, CPU seconds on one core of this project's 2-vCPU AMD EPYC
machine, tenseal 0.3.18, default parameters): a client encrypts and serialises about 0.7M
entries/s, the server parses and adds about 1.6M client-entries/s, the key holder decrypts
about 2.2M entries/s; a ciphertext of 4096 slots is about 331 KB (81 B per entry, 20x fp32).
Full encryption of a BERT-base-sized update (109,483,778 entries, 2 clients): 26,730
ciphertexts = 8.9 GB per client, 156 s client, 66 s server, 49 s decryption (GPT-2-sized:
10.1 GB, 177 / 77 / 56 s), streamed in about 1.1 GiB of resident memory.

Differences from FedML's code (reference notes, selective_he.md 1.1-1.2): FedML's TenSEAL
aggregator encrypts every tensor separately and the whole model (no mask); here only the
masked entries are encrypted and they are packed *across* tensor boundaries, so a ratio-r
update needs ceil(r M / (N/2)) ciphertexts instead of at least one per touched tensor.
Weights are applied by the clients in plaintext, as in FedML's TenSEAL path (its PALISADE
path multiplies ciphertexts by the weight on the server instead).

Measuring (:func:`measure_overhead`, used by the pipeline's ``overhead`` rule and by
``benchmarks/bench_he.py``): one FedAvg round, streamed -- the plaintext parts tensor by
tensor in blocks, the masked entries ``batch_ciphertexts`` ciphertexts per client at a
time (encrypt -> server sum with the public context -> decrypt and check) -- with the
client updates read lazily (:class:`SafetensorsUpdate`, one tensor per access), so a
BERT/GPT-2-size round holds a few tensors and a few hundred ciphertexts, never the model's
ciphertexts.  Every figure is measured for the whole update; nothing is extrapolated.

Integrity: CKKS decryption under the wrong secret key silently returns garbage (of order
1e27), and TenSEAL does not notice when the parameters match.  Every encrypted update and
aggregate therefore carries a *context fingerprint* (sha256 of the serialised public key,
which also encodes SEAL's parameter id, plus the global scale) and a *mask fingerprint*
(sha256 of the names, shapes and packed mask bits); any mismatch raises :class:`HEError`.
The fingerprints are integrity checks against mix-ups, not authentication against an
active adversary.

Reproducibility: TenSEAL/SEAL key generation and encryption draw from the operating
system's randomness and cannot be seeded from Python.  Ciphertext bytes therefore differ
from run to run; decrypted aggregates are reproducible to the CKKS noise (~1e-11
absolute), not bit for bit.  ``make_context(seed=...)`` records nothing and changes
nothing; the argument exists so callers can pass their seed uniformly.

The package, by seam: :mod:`~gibench.he.context` (parameters, contexts, fingerprints,
:class:`HEError`), :mod:`~gibench.he.packing` (mask layout, the masked-entry stream, one
ciphertext's encryption, sum and decryption), :mod:`~gibench.he.protocol` (client, server and
key holder of one round, and the wire messages) and :mod:`~gibench.he.overhead` (lazy updates
and :func:`measure_overhead`).  This ``__init__`` is its public face: import from
``gibench.he``, not from the submodules.
"""
from __future__ import annotations

from .context import HEError, HEParams, context_fingerprint, load_context, make_context, public_context, slot_count
from .overhead import CLOCKS, UNSEEDED_COLUMNS, SafetensorsUpdate, check_context_params, device_string, measure_overhead
from .packing import decrypt_ciphertext, encrypt_chunks, iter_masked_values, mask_fingerprint, sum_ciphertexts
from .protocol import AggregatedUpdate, EncryptedUpdate, aggregate, decrypt_aggregate, encrypt_update

__all__ = [
    "HEError", "HEParams", "EncryptedUpdate", "AggregatedUpdate",
    "make_context", "public_context", "load_context", "context_fingerprint",
    "mask_fingerprint", "slot_count",
    "encrypt_update", "aggregate", "decrypt_aggregate",
    "iter_masked_values", "encrypt_chunks", "sum_ciphertexts", "decrypt_ciphertext",
    "measure_overhead", "device_string", "SafetensorsUpdate", "check_context_params", "UNSEEDED_COLUMNS", "CLOCKS",
]

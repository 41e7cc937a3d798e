"""Measuring the cost of selective encryption (:func:`measure_overhead`, used by the pipeline's
``overhead`` rule and ``benchmarks/bench_he.py``): one streamed FedAvg round against plaintext
FedAvg, with client updates read lazily from safetensors files (:class:`SafetensorsUpdate`) and
the time spent fetching them taken out of the client's time (:class:`_Timed`)."""
from __future__ import annotations

import math
import os
import platform
import time
from itertools import islice
from typing import Any, Mapping, Sequence

import numpy as np
import torch

import tenseal as ts

from .context import HEError, HEParams, context_fingerprint, make_context, public_context, slot_count
from .packing import (
    _BLOCK, _Layout, decrypt_ciphertext, _flat_numpy, _layout, _masked_values, _plain_dtype, sum_ciphertexts)
from .protocol import _header_bytes, _header_dict, _server_context


# --------------------------------------------------------------------------- lazy updates
_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
              "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
              "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


class SafetensorsUpdate(Mapping):
    """A client update in a safetensors file, read one tensor per access (memory-mapped),
    so that streaming a BERT-size update holds one tensor, not the whole model.
    :meth:`meta` gives a tensor's shape and dtype without reading it."""

    def __init__(self, path: str | os.PathLike):
        from safetensors import safe_open

        self.path = os.fspath(path)
        try:
            with safe_open(self.path, framework="pt") as f:
                self._meta = {}
                for k in f.keys():
                    sl = f.get_slice(k)
                    dt = sl.get_dtype()
                    if dt not in _ST_DTYPES:
                        raise HEError(f"{self.path}: tensor {k!r} has unsupported dtype {dt}")
                    self._meta[k] = (tuple(int(d) for d in sl.get_shape()), _ST_DTYPES[dt])
        except HEError:
            raise
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise HEError(f"{self.path}: not a readable safetensors file ({e})") from e

    def meta(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        return self._meta[name]

    def __getitem__(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        if name not in self._meta:
            raise KeyError(name)
        with safe_open(self.path, framework="pt") as f:
            return f.get_tensor(name)

    def __iter__(self):
        return iter(self._meta)

    def __len__(self) -> int:
        return len(self._meta)


# The clock of measure_overhead: "process" = CPU seconds of this process (all threads;
# time.process_time), "wall" = elapsed seconds (time.perf_counter).  The measured work is
# single-threaded (TenSEAL encrypts a <= N/2-slot vector on one thread; numpy too), so on an
# idle core both agree; on a shared machine CPU time is the stable measure of the work.
CLOCKS = {"process": time.process_time, "wall": time.perf_counter}


class _Timed(Mapping):
    """Wraps an update and adds up the seconds spent fetching tensors (disk reads, lazy
    generation), so that they can be taken out of the client's measured time."""

    def __init__(self, update: Mapping[str, torch.Tensor], now=time.perf_counter):
        self.update, self.seconds, self._now = update, 0.0, now
        if callable(getattr(update, "meta", None)):
            self.meta = update.meta

    def __getitem__(self, name):
        t0 = self._now()
        try:
            return self.update[name]
        finally:
            self.seconds += self._now() - t0

    def __iter__(self):
        return iter(self.update)

    def __len__(self):
        return len(self.update)


# --------------------------------------------------------------------------- measurement
def device_string() -> str:
    """'cpu: <model name from /proc/cpuinfo>' (TenSEAL runs on the CPU only)."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {name}"


def check_context_params(ctx: ts.Context, params: HEParams) -> None:
    """Raise :class:`HEError` unless ``ctx`` was made with ``params`` (ring degree, number
    and total bits of the coefficient moduli at key and data level, global scale)."""
    data = ctx.seal_context().data
    key, first = data.key_context_data(), data.first_context_data()
    got = (int(key.parms().poly_modulus_degree()), int(key.total_coeff_modulus_bit_count()),
           int(first.total_coeff_modulus_bit_count()), int(first.chain_index()) + 2,
           float(ctx.global_scale))
    sizes = params.coeff_mod_bit_sizes
    want = (int(params.poly_modulus_degree), sum(sizes), sum(sizes[:-1]), len(sizes),
            params.global_scale)
    if got != want:
        raise HEError(f"the context does not match the CKKS parameters {params.to_dict()} "
                      f"(ring, key bits, data bits, moduli, scale: context {got}, "
                      f"parameters {want})")


def _derive_clients(update, n_clients: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Client 0 gets ``update``; client i > 0 gets ``update`` plus seeded Gaussian noise of
    0.5x the tensor's RMS, so the clients differ and the sum is a real test."""
    gen = torch.Generator().manual_seed(int(seed))
    clients = [dict(update)]
    for _ in range(1, n_clients):
        c = {}
        for name, t in update.items():
            t = t.detach().to("cpu")
            rms = float(t.double().pow(2).mean().sqrt()) if t.numel() else 0.0
            noise = torch.randn(t.shape, generator=gen, dtype=torch.float32)
            c[name] = (t.float() + (0.5 * (rms or 1.0)) * noise).to(_plain_dtype(t))
        clients.append(c)
    return clients


# per-round timings (seconds); measure_overhead reports their median over the repeats
_TIMING_KEYS = ("client_encrypt_s", "client_plain_part_s", "client_ckks_s",
                "server_aggregate_s", "server_ciphertext_sum_s", "server_plain_sum_s",
                "decrypt_s", "plain_client_s", "plain_server_s")

#: measure_overhead columns that depend on randomness TenSEAL does not let us seed: its keys
#: and each encryption's noise come from the OS, and SEAL compresses what it serialises, so
#: the key and ciphertext sizes move by a few hundred bytes between runs, and the CKKS error
#: with the noise.  A replay (``gibench verify``) reports these, it does not compare them.
UNSEEDED_COLUMNS = ("public_context_bytes", "ciphertext_bytes", "message_bytes", "aggregate_ciphertext_bytes",
                    "ciphertext_bytes_per_encrypted_entry", "ratio_ciphertext_bytes_to_plain",
                    "ratio_message_bytes_to_plain", "max_abs_error_encrypted")


def _one_round(clients: list[_Timed], w: list[float], lay: _Layout, ctx: ts.Context,
               server_ctx: ts.Context, cs: int, cfp: str, batch_ciphertexts: int,
               now=time.perf_counter) -> dict:
    """One streamed FedAvg round with selective HE, and the same round in plaintext.

    Memory: one tensor per client (plaintext stages) or ``batch_ciphertexts`` ciphertexts
    per client and their sums (ciphertext stage); nothing of model size is kept."""
    n = len(clients)
    f32 = np.dtype("<f4")
    # --- per tensor: plaintext FedAvg baseline, and the plaintext part of the HE round
    plain_client = [0.0] * n        # baseline: weight the update, serialise it (fp32)
    plain_server = 0.0              # baseline: parse n updates, add them
    part_client = [0.0] * n         # HE round: the unmasked entries, weighted, serialised
    part_server = 0.0               # HE round: parse the n plaintext parts, add them
    part_bytes = [0] * n
    err_plain = 0.0
    t0 = now()
    packed_mask = lay.packed()      # every client copies the mask bits into its message
    mask_bits_s = now() - t0
    for name in lay.names:
        flats = [_flat_numpy(c[name]) for c in clients]   # fetch (timed apart by _Timed)
        odt = np.dtype(np.float64 if flats[0].dtype == np.float64 else np.float32)
        odt = odt.newbyteorder("<")
        bits_all = lay.flat[name]
        for s in range(0, bits_all.size, _BLOCK):         # in blocks: bounded temporaries
            keep = ~bits_all[s:s + _BLOCK]
            ref = np.zeros(keep.size, np.float64)
            acc_plain = None
            acc_part = np.zeros(keep.size, np.float64)
            for i, (flat, wi) in enumerate(zip(flats, w)):
                blk = flat[s:s + _BLOCK]
                t0 = now()
                msg_plain = (blk.astype(np.float64) * wi).astype(f32).tobytes()
                plain_client[i] += now() - t0
                t0 = now()
                v = np.frombuffer(msg_plain, f32)
                if acc_plain is None:
                    acc_plain = v.copy()
                else:
                    acc_plain += v
                plain_server += now() - t0

                t0 = now()
                msg_part = (blk[keep].astype(np.float64) * wi).astype(odt).tobytes()
                part_client[i] += now() - t0
                part_bytes[i] += len(msg_part)
                t0 = now()
                acc_part[keep] += np.frombuffer(msg_part, odt)
                part_server += now() - t0
                ref += blk.astype(np.float64) * wi
            t0 = now()
            out_part = acc_part.astype(odt.newbyteorder("="))  # the dtype the update is returned in
            part_server += now() - t0
            if keep.any():
                err_plain = max(err_plain, float(np.abs(out_part[keep] - ref[keep]).max()))
            del ref, acc_plain, acc_part, out_part, msg_plain, msg_part
        del flats

    # --- ciphertexts, streamed in batches: clients encrypt, server sums, key holder decrypts
    streams = [_masked_values(c, lay, wi, cs) for c, wi in zip(clients, w)]
    ckks_client = [0.0] * n
    ct_bytes = [0] * n
    n_ct = [0] * n
    server_ct = dec = 0.0
    agg_bytes = n_sums = 0
    err_enc = 0.0
    while True:
        batches, refs = [], None
        for i, s in enumerate(streams):
            f0 = clients[i].seconds
            t0 = now()
            chunks = list(islice(s, batch_ciphertexts))
            cts = [ts.ckks_vector(ctx, ch).serialize() for ch in chunks]
            ckks_client[i] += now() - t0 - (clients[i].seconds - f0)
            ct_bytes[i] += sum(len(c) for c in cts)
            n_ct[i] += len(cts)
            batches.append(cts)
            if refs is None:
                refs = [np.array(ch, np.float64) for ch in chunks]
            elif len(chunks) != len(refs) or any(a.size != b.size for a, b in zip(refs, chunks)):
                raise HEError(f"client {i} produced a different packing than client 0")
            else:
                for a, b in zip(refs, chunks):
                    a += b
            del chunks
        if not batches[0]:
            break
        t0 = now()
        sums = [sum_ciphertexts(server_ctx, [b[j] for b in batches])
                for j in range(len(batches[0]))]
        server_ct += now() - t0
        agg_bytes += sum(len(x) for x in sums)
        n_sums += len(sums)
        del batches
        t0 = now()
        vals = [decrypt_ciphertext(ctx, x) for x in sums]
        dec += now() - t0
        for got, want in zip(vals, refs):
            err_enc = max(err_enc, float(np.abs(got - want).max()))
        del sums, vals, refs
    if len(set(n_ct)) != 1:
        raise HEError(f"clients produced different numbers of ciphertexts: {n_ct}")
    if n_sums * cs < lay.n_encrypted or (n_ct[0] and n_ct[0] != math.ceil(lay.n_encrypted / cs)):
        raise HEError(f"{n_ct[0]} ciphertexts for {lay.n_encrypted} masked entries")

    dtypes = [str(clients[0].meta(nm)[1] if hasattr(clients[0], "meta") else
                  clients[0][nm].dtype).replace("torch.", "") for nm in lay.names]
    dtypes = ["float64" if d == "float64" else "float32" for d in dtypes]
    header = _header_bytes(_header_dict(lay.names, lay.shapes, dtypes, w[0], lay.fingerprint,
                                        cfp, lay.n_entries, lay.n_encrypted, cs, n_ct[0]))
    msg_bytes = [len(header) + len(packed_mask) + part_bytes[i] + ct_bytes[i] + 8 * n_ct[i]
                 for i in range(n)]
    client_total = [part_client[i] + mask_bits_s + ckks_client[i] for i in range(n)]
    return {
        "client_encrypt_s": sum(client_total) / n, "client_encrypt_s_per_client": client_total,
        "client_plain_part_s": (sum(part_client) / n) + mask_bits_s,
        "client_ckks_s": sum(ckks_client) / n,
        "server_aggregate_s": server_ct + part_server, "server_ciphertext_sum_s": server_ct,
        "server_plain_sum_s": part_server, "decrypt_s": dec,
        "plain_client_s": sum(plain_client) / n, "plain_server_s": plain_server,
        "n_ciphertexts": n_ct[0], "ciphertext_bytes": ct_bytes[0],
        "ciphertext_bytes_per_client": ct_bytes, "plain_part_bytes": part_bytes[0],
        "message_bytes": msg_bytes[0], "message_bytes_per_client": msg_bytes,
        "aggregate_ciphertext_bytes": agg_bytes,
        "max_abs_error_encrypted": err_enc, "max_abs_error_plain_part": err_plain,
    }


def measure_overhead(update: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]],
                     mask: Any, params: HEParams | None = None, n_clients: int = 3, *,
                     weights: Sequence[float] | None = None, seed: int = 0,
                     chunk_slots: int | None = None, batch_ciphertexts: int = 256,
                     ctx: ts.Context | None = None, repeats: int = 1,
                     clock: str = "process") -> dict:
    """Measure one FedAvg round with selective CKKS encryption against plaintext FedAvg.

    ``update``: one client update (the other ``n_clients - 1`` are derived from it with
    seeded noise, :func:`_derive_clients`) or a list of client updates; any Mapping works,
    e.g. :class:`SafetensorsUpdate`, which reads one tensor at a time.  Weights default to
    1/n (FedML).  ``ctx``: a secret context made with ``params`` (one is made, and key
    generation timed, if None).

    The round is streamed: the plaintext parts tensor by tensor, the masked entries in
    batches of ``batch_ciphertexts`` ciphertexts per client (clients encrypt and serialise
    -> the server, holding only the public context, sums them -> the key holder decrypts),
    so memory stays bounded for BERT-size updates.  The stages do exactly what
    :func:`encrypt_update` / :func:`aggregate` / :func:`decrypt_aggregate` do, minus
    scattering the decrypted values into a model-size buffer.  Measured, per round:

    * client (mean over clients): ``client_plain_part_s`` (weight and serialise the
      unmasked entries, copy the mask bits) + ``client_ckks_s`` (gather the weighted masked
      entries, ``ckks_vector`` encryption, serialisation) = ``client_encrypt_s``;
    * server: ``server_ciphertext_sum_s`` (parse + add the ciphertexts) +
      ``server_plain_sum_s`` (parse + add the plaintext parts) = ``server_aggregate_s``;
    * key holder: ``decrypt_s`` (parse + decrypt the summed ciphertexts);
    * plaintext FedAvg baseline: ``plain_client_s`` (weight the whole update, serialise it
      as fp32) and ``plain_server_s`` (parse and add the n updates);
    * bytes: ``ciphertext_bytes`` and ``message_bytes`` (what one client sends: header,
      mask bits, plaintext part, ciphertexts) against ``plain_update_bytes`` = 4 B/entry.

    Times are CPU seconds of this process (``clock="process"``, the default: stable on a
    shared machine, equal to elapsed time on an idle core since the work is single-threaded)
    or elapsed seconds (``clock="wall"``).  Reading tensors from disk is not counted, nor a
    warm-up round trip of one ciphertext before the measured rounds.  With ``repeats > 1``
    every timing is the median over the repeated rounds (sizes are the first round's: they
    differ by a few hundred bytes between runs, see ``UNSEEDED_COLUMNS``; for the errors,
    which vary with the CKKS noise, the maximum is reported).  Correctness is checked on the
    fly: ``max_abs_error_encrypted`` (decrypted sums vs the float64 weighted sums of the
    masked entries) and ``max_abs_error_plain_part``.
    """
    params = params or HEParams()
    if isinstance(update, Mapping):
        clients = _derive_clients(update, int(n_clients), seed)
    else:
        clients = list(update)
    n = len(clients)
    if n < 1:
        raise ValueError("need at least one client")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if int(batch_ciphertexts) < 1:
        raise ValueError(f"batch_ciphertexts must be >= 1, got {batch_ciphertexts}")
    w = [1.0 / n] * n if weights is None else [float(x) for x in weights]
    if len(w) != n:
        raise ValueError(f"{len(w)} weights for {n} clients")
    lay = _layout(mask)
    for i, c in enumerate(clients):
        lay.check_update(c, f"client {i} update")

    now = CLOCKS[clock]
    keygen_s = None
    if ctx is None:
        t0 = now()
        ctx = make_context(params, seed)
        keygen_s = now() - t0
    elif not ctx.is_private():
        raise HEError("measure_overhead needs the secret context (it also decrypts)")
    check_context_params(ctx, params)
    pub_bytes = public_context(ctx)
    server_ctx = _server_context(pub_bytes)
    slots = slot_count(ctx)
    cs = slots if chunk_slots is None else int(chunk_slots)
    if not 1 <= cs <= slots:
        raise ValueError(f"chunk_slots must be in [1, {slots}]")
    cfp = context_fingerprint(ctx)
    if context_fingerprint(server_ctx) != cfp:
        raise HEError("public context fingerprint differs from the secret context's")

    # untimed warm-up: the first encryption/evaluation/decryption of a process pays for
    # lazy initialisation (memory pools, NTT tables) that a long-running client amortises
    warm = np.zeros(slots)
    ct = ts.ckks_vector(ctx, warm).serialize()
    decrypt_ciphertext(ctx, sum_ciphertexts(server_ctx, [ct, ct]))
    timed = [_Timed(c, now) for c in clients]
    rounds = [_one_round(timed, w, lay, ctx, server_ctx, cs, cfp, int(batch_ciphertexts), now)
              for _ in range(int(repeats))]
    res = dict(rounds[0])
    for k in _TIMING_KEYS:
        res[k] = float(np.median([r[k] for r in rounds]))
    res["client_encrypt_s_per_client"] = [float(np.median(v)) for v in
                                          zip(*(r["client_encrypt_s_per_client"] for r in rounds))]
    for k in ("max_abs_error_encrypted", "max_abs_error_plain_part"):
        res[k] = max(r[k] for r in rounds)

    def ratio(a, b):
        return a / b if b else None

    plain_bytes = 4 * lay.n_entries
    he_round = res["client_encrypt_s"] + res["server_aggregate_s"] + res["decrypt_s"]
    plain_round = res["plain_client_s"] + res["plain_server_s"]
    res.update({
        "device": device_string(), "params": params.to_dict(), "tenseal": ts.__version__,
        "n_clients": n, "weights": w, "repeats": int(repeats), "clock": clock,
        "n_tensors": len(lay.names),
        "n_entries": lay.n_entries, "n_encrypted": lay.n_encrypted,
        "ratio_encrypted": ratio(lay.n_encrypted, lay.n_entries), "chunk_slots": cs,
        "slot_utilisation": ratio(lay.n_encrypted, res["n_ciphertexts"] * cs),
        "keygen_s": keygen_s, "public_context_bytes": len(pub_bytes),
        "ciphertext_bytes_per_encrypted_entry": ratio(res["ciphertext_bytes"], lay.n_encrypted),
        "plain_update_bytes": plain_bytes, "he_round_s": he_round, "plain_round_s": plain_round,
        "ratio_ciphertext_bytes_to_plain": ratio(res["ciphertext_bytes"], plain_bytes),
        "ratio_message_bytes_to_plain": ratio(res["message_bytes"], plain_bytes),
        "ratio_client_time_to_plain": ratio(res["client_encrypt_s"], res["plain_client_s"]),
        "ratio_server_time_to_plain": ratio(res["server_aggregate_s"], res["plain_server_s"]),
        "ratio_round_time_to_plain": ratio(he_round, plain_round),
    })
    return res

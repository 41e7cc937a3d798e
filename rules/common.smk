# Shared wildcard constraints and helpers for all rule files.
wildcard_constraints:
    study="[a-z_]+",
    dataset="[a-z0-9_]+",
    model="[a-z0-9_]+(@[a-z0-9_]+)?",  # a model id: lenet, or lenet@dlg_uniform (gibench.model_ids)
    slot="s[0-9]{3}",
    significance="[a-z0-9_]+",  # a significance metric (grad, prodsig, sens, ...), or "any"
    ratio="r[01][.][0-9]{3}",
    attack="[a-z0-9_]+",
    rep="[0-9]+",


SCRIPTS = os.path.join(workflow.basedir, "workflow", "scripts")

from gibench import fl_plan as jobs_fl


def study_weights(wc):
    """The model weights a study's client computes its update on: the seeded initialisation
    (rule model), or the FedAvg global model after a round when the study's
    `fl.attack_checkpoint` asks for a trained model (rule fl_checkpoint)."""
    return jobs_fl.weights_for(
        config,
        wc.study,
        wc.dataset,
        wc.model,
        P.fmt(P.WEIGHTS, study=wc.study, dataset=wc.dataset, model=wc.model),
    )


# ---- `snakemake --report report.html`: mark each table / figure with these helpers, e.g.
#      output: html=report_table(P.TABLE.replace("{ext}", "html")), png=report_figure(...).
# The captions (workflow/report/*.rst) read the rule's outputs named `html` (tables, claims)
# and `png`/`pdf` (figures) and the <file>.prov.json written by run_job.  Categories: one per
# study, plus "Claims" (sorts first) and "Config".
REPORT_CAPTIONS = os.path.join(workflow.basedir, "workflow", "report")


def _report_item(path, caption, subcategory, label):
    parts = path.split(
        "/"
    )  # results/<tables|figures>/<study>/<name>.<ext>; may hold wildcards
    return report(
        path,
        caption=os.path.join(REPORT_CAPTIONS, caption),
        category=parts[-2],
        subcategory=subcategory,
        labels={label: os.path.splitext(parts[-1])[0]},
    )


def report_table(path):
    """A table's HTML view (its caption, the table, its notes), captioned with its provenance."""
    return _report_item(path, "table.rst", "Tables", "table")


def report_figure(path):
    """A figure's PNG output, captioned with what it shows and its provenance."""
    return _report_item(path, "figure.rst", "Figures", "figure")


def report_claims(path):
    """A study's claims report (results/claims/<study>.html): the report's first category."""
    study = os.path.splitext(os.path.basename(path))[0]
    return report(
        path,
        caption=os.path.join(REPORT_CAPTIONS, "claims.rst"),
        category="Claims",
        subcategory="Papers' findings",
        labels={"study": study},
    )

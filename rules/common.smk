# Shared wildcard constraints and helpers for all rule files.
wildcard_constraints:
    study="[a-z_]+",
    dataset="[a-z0-9_]+",
    model="[a-z0-9_]+",
    slot="s[0-9]{3}",
    metric="[a-z0-9_]+",
    ratio="r[01][.][0-9]{3}",
    attack="[a-z0-9_]+",
    rep="[0-9]+",


SCRIPTS = os.path.join(workflow.basedir, "workflow", "scripts")

"""Glue between Snakemake and the library: artifact paths, the target list of each study,
and one job function per rule (the scripts in workflow/scripts call these)."""

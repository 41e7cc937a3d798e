"""Plugin modules: ``GIBENCH_PLUGINS`` names modules (comma-separated) that register entries
(attacks, tables, studies) in gibench's registries when they are imported.

A leaf (it imports nothing from gibench), so that the study registry, which the DAG build
imports and which must know a plugin's study before the config is validated, can load the
plugins without importing torch.  The attack package re-exports it and runs it again when it is
imported (a job script may import only the attacks); importing a module twice is a no-op.
"""
from __future__ import annotations

import importlib
import os

PLUGINS_ENV = "GIBENCH_PLUGINS"


def load_plugins(spec: str | None = None) -> list[str]:
    """Import the modules named in ``GIBENCH_PLUGINS`` (or ``spec``); each registers its entries
    on import.  A module that cannot be imported is an error naming the variable."""
    spec = os.environ.get(PLUGINS_ENV, "") if spec is None else spec
    mods = [m.strip() for m in spec.split(",") if m.strip()]
    for m in mods:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise ImportError(f"{PLUGINS_ENV}={spec!r}: cannot import plugin module {m!r} ({e}); "
                              f"is its directory on PYTHONPATH?") from e
    return mods

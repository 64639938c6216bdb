"""Project imports read from the source (ast), function-level imports included; shared by the layering
and DVC-dependency tests. One implementation: :mod:`core.stage_code`, which writes the stages' code folders."""

from __future__ import annotations

from core.stage_code import (
    PACKAGES,
    ROOT,
    closure,
    imports,
    module_name,
    runs_nothing,
    sources,
)

__all__ = ["PACKAGES", "ROOT", "closure", "imports", "module_name", "runs_nothing", "sources"]

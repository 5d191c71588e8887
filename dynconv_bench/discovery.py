"""Plugin discovery: the one place this package reads installed entry points.

Every extension point is a module and an entry point in its group: variants (`dynconv_bench.variants`), model
architectures (`dynconv_bench.architectures`), release importers (`dynconv_bench.releases`), measurement kinds
(`dynconv_bench.measures`), report formats (`dynconv_bench.formats`) and executors (`dynconv_bench.executors`).
The built-ins are registered through the same groups, in this project's pyproject.toml. Each registry calls
`load_group` once, on its first lookup; `entry_point_names` lists a group without importing anything (the
command line's choices). A plugin that fails to load warns and is left out: it never takes the others down.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from importlib import metadata

VARIANT_GROUP = "dynconv_bench.variants"
ARCHITECTURE_GROUP = "dynconv_bench.architectures"
RELEASE_GROUP = "dynconv_bench.releases"
KIND_GROUP = "dynconv_bench.measures"
FORMAT_GROUP = "dynconv_bench.formats"
EXECUTOR_GROUP = "dynconv_bench.executors"


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """The installed entry points of `group`, in the order the installed metadata lists them."""
    return list(metadata.entry_points(group=group))


def entry_point_names(group: str) -> list[str]:
    """The names of `group`'s entry points, without loading any (duplicates once)."""
    return list(dict.fromkeys(ep.name for ep in entry_points(group)))


def load_group(group: str, what: str, register: Callable[[metadata.EntryPoint], object] | None = None) -> None:
    """`register(ep)` (default: `ep.load()`) for each entry point of `group`; one that raises is a warning
    `could not load WHAT 'NAME' (VALUE): ERROR` and is left out."""
    for ep in entry_points(group):
        try:
            (register or metadata.EntryPoint.load)(ep)
        except Exception as exc:  # a broken plugin must not break the others
            warnings.warn(f"could not load {what} {ep.name!r} ({ep.value}): {exc}", stacklevel=3)

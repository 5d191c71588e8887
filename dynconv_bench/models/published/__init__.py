"""Published releases' weights in this project's models: one importer per release, a registry of
(release, architecture) pairs, each our `create_model(...)` call and a checked key mapping.

Facts about each release's layout are in its module's docstring; docs/published.md says what was verified.
"""

from __future__ import annotations

from .base import (
           EvalTransform,
           ImportRecord,
           Pair,
           PaperResult,
           assemble,
           check_file,
           classes_of,
           find_pair,
           get_pair,
           import_state_dict,
           list_pairs,
           load_checkpoint,
           read_state_dict,
           releases,
           sha256_of,
)

__all__ = ["EvalTransform", "ImportRecord", "PaperResult", "Pair", "assemble", "check_file", "classes_of",
           "find_pair", "get_pair", "import_state_dict", "list_pairs", "load_checkpoint", "read_state_dict",
           "releases", "sha256_of"]

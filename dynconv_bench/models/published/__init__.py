"""Published releases' weights in this project's models: a registry of (release, architecture) pairs, each
our `create_model(...)` call and a checked key mapping, and the file loading and checks they share.

The importers themselves are plugins (the `dynconv_bench.releases` entry points; the built-in ones live beside
the built-in variants); facts about a release's layout are in its module's docstring.
"""

from __future__ import annotations

from .base import (
           EvalTransform,
           ImportRecord,
           Pair,
           PaperResult,
           Placement,
           Placer,
           assemble,
           check_file,
           classes_of,
           find_pair,
           get_pair,
           import_state_dict,
           list_pairs,
           load_checkpoint,
           read_state_dict,
           register_pair,
           release_module,
           releases,
           sha256_of,
)

__all__ = ["EvalTransform", "ImportRecord", "PaperResult", "Pair", "Placement", "Placer", "assemble", "check_file",
           "classes_of", "find_pair", "get_pair", "import_state_dict", "list_pairs", "load_checkpoint",
           "read_state_dict", "register_pair", "release_module", "releases",
           "sha256_of"]

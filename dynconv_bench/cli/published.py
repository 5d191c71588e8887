"""CLI verb `import`: a published release's weights file converted into this project's model, every tensor checked."""

from __future__ import annotations

import argparse

from .common import command


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="convert a published release's weights file into our model (checked)")
    p.add_argument("release", help="the release the file comes from (a wrong name lists the installed ones)")
    p.add_argument("file", help="the release's checkpoint (.pth, .pth.tar, .pt)")
    p.add_argument("-o", "--output", required=True, help="where to write the converted model (.pt)")
    p.add_argument("--arch", default=None, help="the release's architecture (default: the one the file fits)")
    p.add_argument("--sha256", default=None, help="expected sha256 of the file")
    p.add_argument("--size", type=int, default=None, help="expected size of the file in bytes")


@command
def cmd_import(args: argparse.Namespace) -> int:
    """Map every tensor of FILE into our model of its architecture; write our state_dict and the import record."""
    import torch

    from ..errors import UserError, unknown_choice
    from ..files import check_not_input, check_output_path, replacing
    from ..models.published import (
        check_file,
        classes_of,
        get_pair,
        import_state_dict,
        list_pairs,
        read_state_dict,
        releases,
    )

    if args.release not in releases():  # before reading a possibly large file
        raise unknown_choice("release", args.release, releases())
    check_output_path(args.output, "converted model", example="model.pt")  # a link or folder: before the work
    plugins = [("plugin", f) for f in getattr(args, "plugin", None) or []]
    check_not_input(args.output, [("checkpoint", args.file), *plugins], "converted model")
    digest = check_file(args.file, args.sha256, args.size)
    sd = read_state_dict(args.file)
    if args.arch is not None:
        pair = get_pair(args.release, args.arch)
    else:
        pair = _fitting_pair(args.release, sd)
        if pair is None:
            archs = ", ".join(p.arch for p in list_pairs() if p.release == args.release)
            raise UserError(f"{args.file} fits no {args.release} architecture ({archs}); pass --arch NAME to see "
                            "the first tensor that differs")
    model = import_state_dict(pair, sd)
    payload = {"release": pair.release, "arch": pair.arch, "backbone": pair.backbone, "variant": pair.variant,
               "config": dict(pair.config), "num_classes": classes_of(pair, sd), "source_file": str(args.file),
               "source_sha256": digest, "state_dict": model.state_dict()}
    with replacing(args.output, "converted model") as tmp:
        torch.save(payload, tmp)
    print(f"{pair.name}: {len(sd)} tensors of {args.file} (sha256 {digest}) mapped into {pair.backbone} + "
          f"{pair.variant} {dict(pair.config)}, every one of ours set; wrote {args.output}")
    return 0


def _fitting_pair(release: str, sd: dict):  # noqa: ANN202
    """The release's architecture whose mapping takes `sd` completely (built on the meta device), or None."""
    import torch

    from ..errors import UserError
    from ..models.published import assemble, classes_of, list_pairs

    for pair in (p for p in list_pairs() if p.release == release):
        try:
            with torch.device("meta"):
                model = pair.build(classes_of(pair, sd))
            assemble(pair, sd, model)
        except UserError:
            continue
        return pair
    return None

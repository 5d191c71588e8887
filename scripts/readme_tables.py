"""Measure the README's variants tables and write them between the README's markers.

Every figure in the tables is counted here (parameters, MACs at 224x224 with 1000 classes);
the official release's parameter counts appear only in a column labelled as a reference.
Run: python scripts/readme_tables.py [--check]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

import dynconv_bench as dcb
from dynconv_bench.metrics import count_deployed_params, count_params

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- variants-table:start -->", "<!-- variants-table:end -->"

# Reference only: parameter counts of the official KernelDNA release's models (1000 classes).
KERNELDNA_RELEASE_PARAMS = {
    "kerneldna_resnet18": ("resnet18", 9_240_798),
    "kerneldna_resnet50": ("resnet50", 22_778_060),
    "kerneldna_mobilenetv2_100": ("mobilenetv2_100", 3_136_840),
    "kerneldna_mobilenetv2_050": ("mobilenetv2_050", 1_878_232),
}


def _m(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def _g(n: int) -> str:
    return f"{n / 1e9:.3f}G"


def variants_table() -> str:
    rows = ["| variant | paper | defaults | ResNet-18 params | deployed params | MACs (deployed form) | of which dynamic overhead |",
            "|---|---|---|---|---|---|---|"]
    for name in dcb.list_variants():
        cls = dcb.get_variant(name)
        model = dcb.create_model("resnet18", name, num_classes=1000).eval()
        prof = dcb.profile(dcb.deploy(model), input_size=(3, 224, 224))
        defaults = ", ".join(f"{k}={v}" for k, v in cls.default_config().items())
        paper = f"{cls.paper} ({cls.year})" if cls.year and str(cls.year) not in cls.paper else cls.paper
        rows.append(f"| `{name}` | {paper} | {defaults} | {_m(count_params(model)['total'])} | "
                    f"{_m(count_deployed_params(model)['total'])} | {_g(prof.macs)} | {_g(prof.overhead_macs)} |")
    return "\n".join(rows)


def architectures_table() -> str:
    rows = ["| architecture | params | static backbone params | deployed params | MACs (deployed) "
            "| official release params (reference) |",
            "|---|---|---|---|---|---|"]
    for arch, (backbone, release) in KERNELDNA_RELEASE_PARAMS.items():
        model = dcb.create_model(arch, "static", num_classes=1000).eval()
        static = dcb.create_model(backbone, "static", num_classes=1000)
        prof = dcb.profile(dcb.deploy(model), input_size=(3, 224, 224))
        rows.append(f"| `{arch}` | {count_params(model)['total']:,} | {count_params(static)['total']:,} | "
                    f"{count_deployed_params(model)['total']:,} | {_g(prof.macs)} | {release:,} |")
    return "\n".join(rows)


def trained_and_deployed_macs(backbone: str = "resnet18", variant: str = "kerneldna") -> tuple[int, int]:
    """MACs per image of the trained form (what the suites' leaderboards count) and of the deployed form."""
    model = dcb.create_model(backbone, variant, num_classes=1000).eval()
    return (dcb.profile(model, input_size=(3, 224, 224)).macs,
            dcb.profile(dcb.deploy(model), input_size=(3, 224, 224)).macs)


def block() -> str:
    """The README's text between the markers, every figure counted now."""
    torch.manual_seed(0)
    trained, deployed = trained_and_deployed_macs()
    return (f"{START}\nMeasured by `python scripts/readme_tables.py` (1000 classes, 224x224, MACs per image"
            f" traced on a batch of 2 as the suites count them, 1 multiply-add = 1; FLOPs = 2 x MACs). MACs are"
            f" those of the deployed form (static parts folded, what inference runs); the suites' leaderboards"
            f" count the trained form (`MACs trained form`), e.g. KernelDNA's ResNet-18 {trained / 1e6:,.0f} M"
            f" there, {_g(deployed)} here."
            f"\n\n{variants_table()}\n\n"
            f"KernelDNA's architectures (the paper's models, registered with timm):\n\n{architectures_table()}\n{END}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README's tables differ")
    args = parser.parse_args()
    body = block()
    text = README.read_text()
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: body, text, flags=re.S)
    if args.check:
        return int(new != text)
    README.write_text(new)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

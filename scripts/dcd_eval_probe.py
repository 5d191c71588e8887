"""Why DCD's test loss explodes on the synthetic task: train the `cpu` suite's DCD cell (cifar_resnet20, seed 2),
then follow the test sample with the largest logits through every DCD layer beside the median sample.

    python scripts/dcd_eval_probe.py [--seed 2]

Prints the cell's top-1 and loss, how many test samples give non-finite or |logit| > 100 outputs, and per DCD
layer the largest |output| and |Phi| of the worst and the median sample (results/README.md quotes it).
"""

from __future__ import annotations

import argparse

import torch

import dynconv_bench.training.loop as loop
from dynconv_bench.execution.suite import load_suite
from dynconv_bench.measures import get_kind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args()
    seen: dict = {}
    evaluate = loop.evaluate

    def keep(model, dataset, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202 - the loop's own signature
        seen["model"], seen["test"] = model, dataset
        return evaluate(model, dataset, *a, **k)

    loop.evaluate = keep
    torch.set_num_threads(1)
    cell = next(c for c in load_suite("cpu").cells() if c.kind == "accuracy" and c.variant == "dcd"
                and c.options["dataset"] == "synthetic" and c.options["seed"] == args.seed)
    spec = cell.model_spec(())
    spec.load_plugins()
    result = get_kind("accuracy").measure(spec, cell.opts)
    print(f"top-1 {result.top1:.2f}, test loss {result.loss}")
    model, test = seen["model"].eval(), seen["test"]
    x = torch.stack([test[i][0] for i in range(len(test))])
    with torch.no_grad():
        logits = model(x)
    peak = torch.nan_to_num(logits.abs(), nan=float("inf")).amax(1)
    print(f"test samples: {len(x)}; non-finite logits: {int((~torch.isfinite(logits)).any(1).sum())}; "
          f"|logit| > 100: {int((peak > 100).sum())}; median sample's largest |logit|: {float(peak.median()):.3g}")
    from dynconv_bench_variants.dcd import DCDConv2d

    worst, median = int(peak.argmax()), int(peak.argsort()[len(peak) // 2])
    rows = []

    def record(name: str):  # noqa: ANN202
        def hook(mod, inp, out) -> None:  # noqa: ANN001
            _, phi = mod.dynamics(inp[0])
            rows.append((name, *(float(t.abs().max()) for t in (out[0], out[1], phi[0], phi[1]))))
        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, DCDConv2d):
            mod.register_forward_hook(record(name))
    with torch.no_grad():
        model(x[[worst, median]])
    print("layer | max |out| worst, median | max |Phi| worst, median")
    for name, ow, om, pw, pm in rows:
        print(f"{name} | {ow:.3g}, {om:.3g} | {pw:.3g}, {pm:.3g}")


if __name__ == "__main__":
    main()

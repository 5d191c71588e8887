"""Release importer plugin (`dynconv_bench.releases`): a "release" whose checkpoints are our static cifar_resnet8's
own state_dict, with the maker of its test fixtures (scripts/make_release_fixtures.py)."""

from __future__ import annotations

from dynconv_bench.models.published import EvalTransform, Pair, register_pair


def _same(key, tensor, model):  # noqa: ANN001, ANN202
    return [(key, tensor)]


register_pair(Pair("test-release", "r8", "cifar_resnet8", "static", {}, _same, EvalTransform(32, 32, "bilinear"),
                   "fc.weight"))

FIXTURE_CASES = [("r8", 10, 32, ["layer1.0"])]


def fixture_builders(get):  # noqa: ANN001, ANN201
    """The release's own model: here ours (`get`, which imports from a checkout, is not needed)."""
    from dynconv_bench import create_model

    return {"r8": lambda n: create_model("cifar_resnet8", "static", num_classes=n)}


def fixture_tensors(model, modules):  # noqa: ANN001, ANN201
    """More tensors the saved modules need: the classifier, to show the script asks for them."""
    return {"fc.weight": model.state_dict()["fc.weight"].clone()}

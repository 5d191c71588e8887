"""Imported release weights compute what the releases' own code computes (fixtures by scripts/make_release_fixtures.py)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from dynconv_bench.errors import UserError
from dynconv_bench.models.published import assemble, get_pair, import_state_dict, list_pairs

FIXTURES = Path(__file__).parent / "fixtures" / "published"
TOL = 1e-5  # max |ours - release| / max |release|, fp32, eval
CASES = sorted(p.relative_to(FIXTURES).with_suffix("").as_posix() for p in FIXTURES.glob("*/*.pt"))


def load(case: str) -> dict:
    """A fixture with its state_dict merged back from `CASE.pt.part2`, ... (files stay under 5 MB)."""
    fx = torch.load(FIXTURES / f"{case}.pt", weights_only=True)
    path = FIXTURES / f"{case}.pt"
    for part in sorted(path.parent.glob(f"{path.name}.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1])):
        fx["state_dict"].update(torch.load(part, weights_only=True))
    return fx


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("case", CASES)
def test_imported_outputs_equal_release(case: str) -> None:
    fx = load(case)
    pair = get_pair(fx["release"], fx["arch"])
    prefixes = None if fx["whole"] else tuple(c["ours_module"] + "." for c in fx["cases"])
    torch.manual_seed(0)
    model = import_state_dict(pair, fx["state_dict"], prefixes, num_classes=fx["num_classes"])
    with torch.no_grad():
        for c in fx["cases"]:
            module = model.get_submodule(c["ours_module"]) if c["ours_module"] else model
            err = relative_error(module(c["input"]), c["output"])
            assert err <= TOL, f"{pair.name} {c['ours_module'] or 'model'}: relative error {err:.2e}"


def test_fixtures_cover_the_pairs_the_issue_names() -> None:
    need = {"odconv/resnet18_1x", "odconv/resnet18_4x", "odconv/mobilenetv2_050_1x", "kernelwarehouse/resnet18_1x",
            "kernelwarehouse/resnet18_4x", "kerneldna/resnet18", "kerneldna/mobilenetv2_050",
            "timm/efficientnet_cc_b0_4e"}
    assert need <= set(CASES)
    assert sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file()) <= 25_000_000


def _manifests() -> list[tuple[str, str, list]]:
    out = []
    for path in sorted(FIXTURES.glob("*/manifests.json.gz")):
        meta = json.loads(gzip.decompress(path.read_bytes()))
        out += [(meta["release"], arch, entries) for arch, entries in meta["manifests"].items()]
    return out


@pytest.mark.parametrize("release,arch,entries", _manifests(), ids=lambda v: v if isinstance(v, str) else "")
def test_whole_model_manifest_maps_completely(release: str, arch: str, entries: list) -> None:
    """Every tensor of the release's full model has a place in ours, of the same shape, and every one of ours is set."""
    pair = get_pair(release, arch)
    sd = {k: torch.empty(shape, dtype=getattr(torch, dtype), device="meta") for k, shape, dtype in entries}
    with torch.device("meta"):
        model = pair.build(1000)
    filled = assemble(pair, sd, model)
    assert set(filled) == set(model.state_dict())


def test_every_pair_has_a_manifest() -> None:
    have = {(r, a) for r, a, _ in _manifests()}
    assert {(p.release, p.arch) for p in list_pairs()} <= have


def _first_case() -> dict:
    return load("odconv/resnet18_1x")


def test_corrupted_file_names_first_bad_key() -> None:
    fx = _first_case()
    pair = get_pair("odconv", "resnet18_1x")
    sd = dict(fx["state_dict"])
    sd["layer1.0.conv1.attention.fc.weight"] = sd["layer1.0.conv1.attention.fc.weight"][:, :8]
    with pytest.raises(UserError, match=r"release tensor 'layer1.0.conv1.attention.fc.weight' \(16, 8, 1, 1\) "
                                        r"does not fit ours 'layer1.0.conv1.attention.fc.weight' \(16, 64, 1, 1\)"):
        import_state_dict(pair, sd, ("layer1.0.",), num_classes=10)


def test_unknown_release_key_and_unset_key_name_both() -> None:
    fx = _first_case()
    pair = get_pair("odconv", "resnet18_1x")
    sd = dict(fx["state_dict"])
    sd["layer1.0.conv1.attention.extra_fc.weight"] = sd.pop("layer1.0.conv1.attention.channel_fc.weight")
    with pytest.raises(UserError, match=r"maps to 'layer1.0.conv1.attention.extra_fc.weight', which our model lacks "
                                        r"\(closest of ours: 'layer1.0.conv1.attention.fc.weight'\)"):
        import_state_dict(pair, sd, ("layer1.0.",), num_classes=10)
    sd = dict(fx["state_dict"])
    del sd["layer1.0.bn2.running_var"]
    with pytest.raises(UserError, match=r"ours 'layer1.0.bn2.running_var' \(64,\) receives no release tensor "
                                        r"\(closest release key: 'layer2.0.bn2.running_var'\)"):
        import_state_dict(pair, sd, ("layer1.0.",), num_classes=10)


def test_mismatched_architecture_is_refused() -> None:
    """A 1x file given as 4x: the first kernel bank differs in shape and the message names it."""
    fx = _first_case()
    with pytest.raises(UserError, match=r"release tensor 'layer1.0.conv1.weight' \(1, 64, 64, 3, 3\) does not fit "
                                        r"ours 'layer1.0.conv1.weight' \(4, 64, 64, 3, 3\)"):
        import_state_dict(get_pair("odconv", "resnet18_4x"), fx["state_dict"], ("layer1.0.",), num_classes=10)


# -- releases are plugins: the core finds them through the entry point group -------------------------
def test_builtin_releases_come_from_the_entry_points_and_live_outside_the_core() -> None:
    from importlib.metadata import entry_points

    from dynconv_bench.models.published import releases
    from dynconv_bench.models.registry import RELEASE_GROUP

    eps = {ep.name: ep.value for ep in entry_points(group=RELEASE_GROUP)}
    assert set(eps) == set(releases()) == {"odconv", "kernelwarehouse", "kerneldna", "timm"}
    for pair in list_pairs():
        assert pair.place.__module__ == eps[pair.release], pair.name


def test_a_third_party_release_is_found_and_a_broken_one_warns(tmp_path: Path, monkeypatch) -> None:
    from importlib.metadata import EntryPoint

    from dynconv_bench import discovery
    from dynconv_bench.models.published import base, releases
    from dynconv_bench.models.registry import RELEASE_GROUP

    (tmp_path / "toy_release_plugin.py").write_text(
        "from dynconv_bench.models.published import EvalTransform, Pair, register_pair\n\n"
        "def _same(key, tensor, model):\n"
        "    return [(key, tensor)]\n\n"
        "register_pair(Pair('toy', 'r8', 'cifar_resnet8', 'static', {}, _same, EvalTransform(32, 32, 'bilinear'),\n"
        "                   'fc.weight'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "toy_release_plugin", raising=False)
    eps = [EntryPoint("toy", "toy_release_plugin", RELEASE_GROUP),
           EntryPoint("broken", "no_such_release_module_xyz", RELEASE_GROUP),
           EntryPoint("empty", "json", RELEASE_GROUP)]  # imports, registers nothing
    monkeypatch.setattr(base, "_PAIRS", {})
    monkeypatch.setattr(base, "_MODULES", {})
    monkeypatch.setattr(base, "_releases_loaded", False)
    real = discovery.entry_points  # the one discovery helper: a third party's entry points arrive through it
    monkeypatch.setattr(discovery, "entry_points", lambda group: eps if group == RELEASE_GROUP else real(group))
    with pytest.warns(UserWarning) as caught:
        assert releases() == ["toy"]
    assert [str(w.message).split(" (")[0] for w in caught] == [
        "could not load release 'broken'", "release entry point 'empty'"]
    pair = get_pair("toy", "r8")
    theirs = pair.build(10).state_dict()
    ours = import_state_dict(pair, theirs)
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in theirs.items())
    with pytest.raises(UserError, match="valid: r8"):
        get_pair("toy", "r9")
    monkeypatch.delitem(__import__("sys").modules, "toy_release_plugin", raising=False)

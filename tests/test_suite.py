"""Suite files: validation errors name the file and key; expansion gives exactly the expected cells."""

from __future__ import annotations

import pytest

import dynconv_bench
from dynconv_bench.errors import ConfigError, UserError
from dynconv_bench.execution.cell import Cell, stable_hash
from dynconv_bench.execution.suite import list_suites, load_suite, parse_suite, resolve_suite_path

BASE = {"backbones": ["cifar_resnet8"], "variants": ["static"], "measure": {"params": {}}}


def _with(**changes: object) -> dict:
    data = {**BASE, "measure": dict(BASE["measure"])}
    data.update(changes)
    return data


def test_expansion_counts_and_options() -> None:
    suite = parse_suite({
        "name": "t", "backbones": ["cifar_resnet8", "resnet18"], "variants": ["static", "static-se"],
        "measure": {"params": {}, "speed": {"backbones": ["cifar_resnet8"], "batch_sizes": [1, 4],
                                            "modes": ["inference", "train"]},
                    "accuracy": {"backbones": ["cifar_resnet8"], "datasets": ["digits", "synthetic"],
                                 "seeds": [0, 1, 2], "variants": ["static"]}},
    })
    cells = suite.cells()
    kinds = [c.kind for c in cells]
    assert kinds.count("params") == 2 * 2
    assert kinds.count("speed") == 2 * 2 * 2
    assert kinds.count("accuracy") == 2 * 3  # only the static variant
    assert len({c.key for c in cells}) == len(cells)
    speed = [c for c in cells if c.kind == "speed"]
    assert sorted((c.options["mode"], c.options["batch_size"]) for c in speed if c.variant == "static") == [
        ("inference", 1), ("inference", 4), ("train", 1), ("train", 4)]
    assert all(c.options["input_size"] == [3, 32, 32] and c.options["num_classes"] == 10 for c in speed)
    p18 = next(c for c in cells if c.kind == "params" and c.backbone == "resnet18")
    assert p18.options["num_classes"] == 1000
    assert cells.index(p18) < cells.index(speed[0])  # cheap kinds first


def test_star_expands_to_every_registered_variant() -> None:
    suite = parse_suite(_with(variants=["*"]))
    assert [v[0] for v in suite.variants] == dynconv_bench.list_variants()


def test_named_configs_and_hashes() -> None:
    suite = parse_suite(_with(variants=[
        "static-se", {"name": "se-r8", "variant": "static-se", "config": {"reduction": 8}}]))
    (l1, n1, c1), (l2, n2, c2) = suite.variants
    assert (l1, n1, l2, n2) == ("static-se", "static-se", "se-r8", "static-se")
    assert c1 == {} and c2 == {"reduction": 8}  # what the user wrote; defaults are resolved when built
    a, b = suite.cells()
    assert a.config_hash != b.config_hash
    written_default = parse_suite(_with(variants=[{"variant": "static-se", "config": {"reduction": 4}}])).cells()[0]
    assert written_default.config_hash == a.config_hash  # writing a default names the same cell
    assert stable_hash({"x": 1, "y": [1, 2]}) == stable_hash({"y": [1, 2], "x": 1})
    assert Cell.from_dict(a.to_dict()) == a and Cell.from_dict(a.to_dict()).key == a.key


def test_smoke_cells_keep_their_store_keys() -> None:
    """Hashes of suites/smoke.toml cells as computed before suite.py was split (issue 38): a change is a new cell
    in every store, so rows already measured would be measured again."""
    cells = {(c.backbone, c.variant, c.kind, c.options.get("batch_size")): c for c in load_suite("smoke").cells()}
    pinned = {("cifar_resnet20", "static", "params", None): ("26257b6f6b2be1fc", "e5465340e59999ba"),
              ("resnet18", "condconv", "params", None): ("b28c97ab4e407831", "5ac6d9a24e3f013a"),
              ("cifar_resnet20", "static", "speed", 1): ("26257b6f6b2be1fc", "7d14400333904185"),
              ("cifar_resnet20", "condconv", "speed", 16): ("b28c97ab4e407831", "f7dab48ebbee1608")}
    assert {k: (cells[k].config_hash, cells[k].options_hash) for k in pinned} == pinned


@pytest.mark.parametrize("data, message", [
    (_with(backbone=["x"]), "unknown key 'backbone' (did you mean 'backbones'?)"),
    (_with(backbones=["resnet19"]), "unknown backbone 'resnet19' (did you mean 'resnet18'?)"),
    (_with(variants=["statc"]), "unknown variant 'statc' (did you mean 'static'?)"),
    (_with(variants=[{"variant": "static-se", "config": {"reductoin": 2}}]), "did you mean 'reduction'?"),
    (_with(variants=[{"variant": "static-se", "config": {"reduction": 0}}]), "below the minimum"),
    (_with(variants=["static", "static"]), "duplicate label"),
    (_with(measure={"sped": {}}), "unknown key 'measure.sped' (did you mean 'speed'?)"),
    (_with(measure={"speed": {"batch_size": [1]}}), "did you mean 'batch_sizes'?"),
    (_with(measure={"speed": {"batch_sizes": [0]}}), "batch_sizes must be integers in [1, 65536]"),
    (_with(measure={"speed": {"batch_sizes": "8"}}), "non-empty list of integers"),
    (_with(measure={"speed": {"device": "tpu"}}), "unknown device 'tpu'"),
    (_with(measure={"speed": {"modes": ["infer"]}}), "unknown mode 'infer'"),
    (_with(measure={"accuracy": {"datasets": ["digit"]}}), "unknown dataset 'digit' (did you mean 'digits'?)"),
    (_with(measure={"accuracy": {"recipe": "digits-quik"}}), "unknown recipe 'digits-quik'"),
    (_with(measure={"accuracy": {"variants": ["odconv-4x"]}}), "measure.accuracy.variants"),
    (_with(measure={}), "at least one of"),
    ({"backbones": ["resnet18"], "measure": {"params": {}}}, "variants is required"),
])
def test_validation_errors_name_file_and_key(data: dict, message: str) -> None:
    with pytest.raises(UserError) as info:
        parse_suite(data, source="my.toml")
    assert str(info.value).startswith("my.toml: ")
    assert message in str(info.value)


def test_variant_config_error_is_config_error() -> None:
    with pytest.raises(ConfigError, match="valid keys: min_channels, policy, reduction"):
        parse_suite(_with(variants=[{"variant": "static-se", "config": {"bogus": 1}}]))


def test_malformed_toml_names_file_and_line(write_suite) -> None:  # noqa: ANN001
    path = write_suite('name = "x"\nbackbones = ["resnet18"\nvariants = 3\n', name="broken")
    with pytest.raises(UserError, match=r"broken.toml: malformed TOML: .*line \d+"):
        load_suite(path)


def test_name_resolution(tmp_path, monkeypatch, write_suite) -> None:  # noqa: ANN001
    assert resolve_suite_path("smoke").name == "smoke.toml"
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "mine.toml").write_text('backbones = ["cifar_resnet8"]\nvariants = ["static"]\n'
                                                   "[measure.params]\n")
    monkeypatch.chdir(tmp_path)
    assert load_suite("mine").name == "mine"
    assert "mine" in list_suites() and "smoke" in list_suites()
    with pytest.raises(UserError, match="unknown suite 'smok' \\(did you mean 'smoke'\\?\\)"):
        resolve_suite_path("smok")
    with pytest.raises(UserError, match="suite file not found"):
        resolve_suite_path(tmp_path / "nope.toml")


@pytest.mark.parametrize("name", ["smoke", "cpu", "paper-imagenet", "paper-throughput"])
def test_bundled_suites_validate(name: str) -> None:
    suite = load_suite(name)
    assert suite.name == name and suite.cells()


def test_smoke_suite_covers_every_variant() -> None:
    cells = load_suite("smoke").cells()
    n = len(dynconv_bench.list_variants())
    for kind in ("params", "macs", "speed", "accuracy"):
        assert {c.variant for c in cells if c.kind == kind} == set(dynconv_bench.list_variants())
    assert sum(c.kind == "params" for c in cells) == 2 * n  # cifar_resnet20 and resnet18
    assert {c.backbone for c in cells if c.kind == "speed"} == {"cifar_resnet20"}


@pytest.mark.parametrize("table, message", [
    ({"min_time": -5}, "my.toml: measure.speed: min_time=-5.0 is below the minimum 0.0"),
    ({"warmup": -1}, "measure.speed: warmup=-1 is below the minimum 0"),
    ({"threads": 0}, "measure.speed: threads=0 is below the minimum 1"),
    ({"channels_last": "yes"}, "measure.speed: channels_last='yes' must be bool, not str"),
    ({"min_runs": 2.5}, "measure.speed: min_runs=2.5 must be int, not float"),
    ({"precision": "fp8"}, "measure.speed.precision: unknown precision 'fp8' (did you mean 'fp32'?); valid: bf16, fp16, fp32"),
])
def test_option_types_and_ranges_come_from_params(table: dict, message: str) -> None:
    with pytest.raises(UserError) as info:
        parse_suite(_with(measure={"speed": table}), source="my.toml")
    assert message in str(info.value)


def test_cell_options_are_typed_with_one_set_of_defaults() -> None:
    from dynconv_bench.measures import get_kind, list_kinds
    from dynconv_bench.measures.speed import SpeedOptions

    (cell,) = parse_suite(_with(measure={"speed": {"min_time": 0.5}})).cells()
    o = cell.opts
    assert isinstance(o, SpeedOptions) and (o.min_time, o.batch_size, o.mode, o.precision) == (0.5, 1, "inference",
                                                                                              "fp32")
    assert o.deploy is True and o.warmup is None and o.num_classes == 10
    with pytest.raises(AttributeError, match="speed options have no 'dataset'"):
        o.dataset  # noqa: B018
    for kind in list_kinds():  # every option documented: type and help
        cls = get_kind(kind).options
        assert cls.kind == kind and all(row["help"] and row["type"] for row in cls.describe())


def test_preset_and_memory_cap_keys() -> None:
    suite = parse_suite(_with(backbones=["resnet18"],
                              variants=["static", {"name": "dna-paper", "variant": "kerneldna", "preset": "paper"}],
                              memory_cap="2GiB"))
    a, b = suite.cells()
    assert (a.preset, b.preset, suite.memory_cap) == (None, "paper", "2GiB")
    assert b.model_spec(["p.py"]).preset == "paper" and b.model_spec(["p.py"]).plugins == ("p.py",)
    plain = Cell("s", "resnet18", "x", "kerneldna", b.config, "params", b.options)
    assert b.config_hash != plain.config_hash and Cell.from_dict(b.to_dict()) == b
    with pytest.raises(UserError, match="my.toml: memory_cap: memory cap 'lots' must be bytes"):
        parse_suite(_with(memory_cap="lots"), source="my.toml")


def test_a_preset_in_a_suite_builds_the_presets_model() -> None:
    """Bug: defaults filled in at load overrode every preset key (ODConv paper R18 built 44.9M, not 11.9M)."""
    from dynconv_bench import create_model

    suite = parse_suite(_with(backbones=["resnet18"], measure={"params": {}},
                              variants=[{"name": "od", "variant": "odconv", "preset": "paper"}]))
    (cell,) = suite.cells()
    built = cell.model_spec().build(1000)
    direct = create_model("resnet18", "odconv", preset="paper")
    count = sum(p.numel() for p in built.parameters())
    assert count == sum(p.numel() for p in direct.parameters()) == 11_943_944
    assert cell.stored_config == {"preset": "paper"}  # the store keeps what the user wrote, preset included
    assert Cell.from_dict({**cell.to_dict(), "config": cell.stored_config, "preset": None}) == cell


def test_explicit_config_keys_override_the_preset_in_a_suite() -> None:
    suite = parse_suite(_with(backbones=["resnet18"], measure={"params": {}}, variants=[
        {"name": "od", "variant": "odconv", "preset": "paper", "config": {"num_kernels": 1}}]))
    model = suite.cells()[0].model_spec().build(1000)
    assert {m.num_kernels for m in model.modules() if hasattr(m, "num_kernels")} == {1}


@pytest.mark.parametrize("variants, backbones, message", [
    ([{"variant": "odconv", "preset": "papr"}], ["resnet18"], "variants[0].preset: odconv: unknown preset 'papr'"),
    ([{"variant": "static-se", "preset": "paper"}], ["resnet18"], "unknown preset 'paper'; valid presets: (none)"),
    ([{"variant": "odconv", "preset": "paper"}], ["cifar_resnet8"], "no 'paper' preset for backbone 'cifar_resnet8'"),
])
def test_preset_names_are_checked_when_the_suite_loads(variants: list, backbones: list, message: str) -> None:
    with pytest.raises(UserError) as info:
        parse_suite(_with(backbones=backbones, variants=variants), source="my.toml")
    assert message in str(info.value)


def test_accuracy_overrides_are_checked_when_the_suite_loads() -> None:
    with pytest.raises(UserError, match=r"measure.accuracy.overrides: .*unknown key 'lrr' \(did you mean 'lr'\?\)"):
        parse_suite(_with(measure={"accuracy": {"overrides": {"lrr": 0.1}}}), source="my.toml")
    with pytest.raises(UserError, match="measure.accuracy.overrides"):
        parse_suite(_with(measure={"accuracy": {"overrides": {"lr": -1.0}}}), source="my.toml")
    ok = parse_suite(_with(measure={"accuracy": {"overrides": {"lr": 0.05}}}))
    assert ok.cells()[0].opts.overrides == {"lr": 0.05}


def test_the_suite_reference_in_docs_is_generated_from_the_option_schema() -> None:
    """docs/suites.md is `render()`: adding or changing an option without regenerating it fails here."""
    from pathlib import Path

    from dynconv_bench.execution.suite_reference import render

    doc = Path(__file__).resolve().parents[1] / "docs" / "suites.md"
    assert doc.read_text() == render(), "regenerate: python -m dynconv_bench.execution.suite_reference > docs/suites.md"
    assert "| `interleave` | int | `0` |" in render()  # each kind's options, from its Param table

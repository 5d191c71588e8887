"""The annealed temperature of DyConv/ODConv: schedule units, the iteration floor, the config keys."""

from __future__ import annotations

import pytest
from dynconv_bench_variants._temperature import TemperatureSchedule

import dynconv_bench
from dynconv_bench import ConfigError, TrainingProgress, set_progress


def at(schedule: TemperatureSchedule, iteration: int, iters_per_epoch: int, total: int) -> float:
    return schedule.at(TrainingProgress.at(iteration, iters_per_epoch, total))


def test_epoch_unit_counts_epochs_like_the_official_code():
    # 30 -> 1 over 10 epochs of 22 iterations (220 >= the 200-iteration floor)
    s = TemperatureSchedule(30.0, "epoch", epochs=10, min_iters=200)
    assert [at(s, i, 22, 2200) for i in (0, 22, 110, 220, 500)] == [30.0, 27.1, 15.5, 1.0, 1.0]
    # independent of the run's length: 4 epochs of a 4-epoch run end at 30 - 29 * 88 / 220
    assert at(s, 88, 22, 88) == pytest.approx(18.4)
    # the official formula: 1 + (30 - 1) * (total - current) / total, total = iters/epoch * 10
    assert at(s, 37, 22, 88) == pytest.approx(1 + 29 * (220 - 37) / 220)


def test_floor_in_iterations_stretches_short_anneals():
    # 10% of a 44-iteration run would be 4.4 steps; the floor makes it 200
    s = TemperatureSchedule(30.0, "fraction", fraction=0.1, min_iters=200)
    assert [at(s, i, 22, 44) for i in (0, 4, 44)] == [30.0, pytest.approx(1 + 29 * 196 / 200),
                                                      pytest.approx(1 + 29 * 156 / 200)]
    assert at(s, 200, 22, 44) == 1.0
    # epochs of 2 iterations: 10 epochs = 20 steps, stretched to 50
    e = TemperatureSchedule(30.0, "epoch", epochs=10, min_iters=50)
    assert (at(e, 20, 2, 100), at(e, 25, 2, 100), at(e, 50, 2, 100)) == (pytest.approx(1 + 29 * 30 / 50), 15.5, 1.0)
    # a long run is not touched by the floor: 10% of 10000 steps
    assert at(s, 500, 100, 10_000) == pytest.approx(15.5)
    assert TemperatureSchedule(30.0, "fraction", fraction=0.1, min_iters=0).anneal_iters(22, 44) == pytest.approx(4.4)


def test_bare_fraction_and_constant_schedules():
    f = TemperatureSchedule(30.0, "fraction", fraction=0.2, min_iters=200)
    assert [f.at(p) for p in (0.0, 0.1, 0.2, 1.0)] == [30.0, 15.5, 1.0, 1.0]  # no iteration: no floor
    with pytest.raises(ValueError, match="needs the iteration"):
        TemperatureSchedule(30.0, "epoch").at(0.5)
    for s in (TemperatureSchedule.constant(5.0), TemperatureSchedule(5.0, "epoch", epochs=0),
              TemperatureSchedule(5.0, "fraction", fraction=0.0)):
        assert not s.anneals and [at(s, i, 10, 100) for i in (0, 50, 100)] == [5.0, 5.0, 5.0]
    with pytest.raises(ValueError, match="epoch, fraction"):
        TemperatureSchedule(30.0, "iteration")


def test_describe():
    assert TemperatureSchedule().describe() == "30 -> 1 over 10 epochs (>= 200 iterations)"
    assert TemperatureSchedule(30.0, "fraction", fraction=0.1, min_iters=0).describe() == "30 -> 1 over 0.1 of the run"
    assert TemperatureSchedule.constant(30.0).describe() == "constant 30"


@pytest.mark.parametrize("variant", ["dyconv", "odconv"])
def test_config_keys_reach_every_layer(variant: str):
    model = dynconv_bench.create_model("cifar_resnet8", variant, num_classes=10, temperature=11.0,
                                       anneal_unit="epoch", anneal_epochs=2, anneal_min_iters=0)
    layers = [m for m in model.modules() if hasattr(m, "schedule")]
    assert layers and {m.temperature for m in layers} == {11.0}
    set_progress(model, 0.5, iteration=5, iters_per_epoch=5, total_iters=10)
    assert {m.temperature for m in layers} == {6.0}
    cfg = model.dynconv_report.config
    assert (cfg["anneal_unit"], cfg["anneal_epochs"], cfg["anneal_min_iters"]) == ("epoch", 2.0, 0)
    with pytest.raises(ConfigError, match="valid: epoch, fraction"):
        dynconv_bench.create_model("cifar_resnet8", variant, num_classes=10, anneal_unit="minutes")
    with pytest.raises(ConfigError, match="below the minimum"):
        dynconv_bench.create_model("cifar_resnet8", variant, num_classes=10, anneal_min_iters=-1)


def test_training_progress_is_the_fraction_with_the_iteration():
    p = TrainingProgress.at(33, 22, 88)
    assert p == 0.375 and (p.iteration, p.epoch, p.iters_per_epoch, p.total_iters) == (33, 1.5, 22, 88)
    assert TrainingProgress(1.7) == 1.0 and TrainingProgress(0.3).epoch is None


def test_report_notes_the_schedule_and_where_runs_ended():
    import pandas as pd

    from dynconv_bench.measures.accuracy import temperature_note

    cfg = dynconv_bench.get_variant("odconv").validate({})
    schedule = {"temperature_schedules": ["30 -> 1 over 10 epochs (>= 200 iterations)"]}  # what training records
    rows = [("accuracy", "ok", "odconv", cfg, {"final_temperatures": [18.4], **schedule}),
            ("accuracy", "ok", "odconv", cfg, {"final_temperatures": [24.8], **schedule}),
            ("accuracy", "ok", "static", {"policy": "blocks"}, {"final_temperatures": []}),
            ("params", "ok", "dyconv", dynconv_bench.get_variant("dyconv").validate({}), {})]
    df = pd.DataFrame(rows, columns=["kind", "status", "variant", "config", "values"])
    unrecorded = df.assign(values=[{k: x for k, x in v.items() if k != "temperature_schedules"} for v in df["values"]])
    assert temperature_note(unrecorded) == ""  # no recorded schedule: nothing guessed
    assert temperature_note(df) == ("Temperature schedules (accuracy runs): odconv 30 -> 1 over 10 epochs "
                                          "(>= 200 iterations), at 18.4-24.8 when training ended.")
    kw_old = pd.DataFrame([("accuracy", "ok", "kernelwarehouse", dynconv_bench.get_variant("kernelwarehouse").validate({}),
                            {"final_temperatures": [0.1]})], columns=df.columns)
    assert "-> 1" not in temperature_note(kw_old)  # bug: the fallback printed "-> 1" for a 1 -> 0 schedule
    assert temperature_note(df[df["variant"] == "static"]) == ""
    kw = pd.DataFrame([("accuracy", "ok", "kernelwarehouse", {}, {
        "final_temperatures": [0.9], "temperature_schedules": ["1 -> 0 over 20 epochs (>= 200 iterations)"]})],
        columns=df.columns)
    assert temperature_note(kw) == ("Temperature schedules (accuracy runs): kernelwarehouse 1 -> 0 over 20 epochs "
                                    "(>= 200 iterations), at 0.9 when training ended.")

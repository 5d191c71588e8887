"""Accuracy does not depend on the per-sample conv strategy cache: training and evaluation run one fixed strategy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Subset

import dynconv_bench
import dynconv_bench.models.per_sample_conv as psc
from dynconv_bench.data import get_dataset
from dynconv_bench.models.modelspec import ModelSpec
from dynconv_bench.training import train_and_evaluate
from dynconv_bench.training.loop import TRAINING_STRATEGY, training_strategy

BATCH = 32  # every batch of training, recalibration and evaluation has this size: one set of cache keys


def _digits() -> tuple[Subset, Subset]:
    train, test = get_dataset("digits", "train", image_size=8), get_dataset("digits", "test", image_size=8)
    out = []
    for data, n in ((train, 2 * BATCH), (test, BATCH)):
        sub = Subset(data, list(range(n)))
        sub.num_classes, sub.name = 10, "digits"  # type: ignore[attr-defined]
        out.append(sub)
    return out[0], out[1]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return ModelSpec("cifar_resnet8", "condconv", {}).build(10)


def _cache_keys(path: Path, train: Subset, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The strategy cache keys of this model at this batch, as an autotuned forward writes them to `path`."""
    psc.set_strategy_cache(path)
    psc.clear_strategy_cache()
    x = next(iter(DataLoader(train, batch_size=BATCH)))[0]
    with monkeypatch.context() as m, torch.no_grad(), psc.use_strategy("auto"):
        m.setattr(psc, "_tune", lambda candidates, *a, **kw: candidates[0])  # the keys, not the timings
        _model()(x)
    keys = list(json.loads(path.read_text())["choices"])
    assert keys and all("mixture" in k for k in keys)
    return keys


def _train(cache: Path, train: Subset, test: Subset) -> tuple[dict, dict]:
    psc.set_strategy_cache(cache)
    psc.clear_strategy_cache()
    before = cache.read_text() if cache.exists() else None
    with psc.record_strategies() as used:
        result = train_and_evaluate(_model(), (train, test), "digits-quick", epochs=1, batch_size=BATCH,
                                    eval_batch_size=BATCH, bn_recalibration_batches=2)
    assert (cache.read_text() if cache.exists() else None) == before  # nothing tuned, nothing written
    return result, dict(used)


def test_training_ignores_the_strategy_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if "condconv" not in dynconv_bench.list_variants():
        pytest.skip("condconv not registered")
    monkeypatch.delenv(psc.STRATEGY_ENV, raising=False)
    monkeypatch.setattr(psc, "_CACHE_FILE", [])
    monkeypatch.setattr(psc, "_CACHE", {})
    train, test = _digits()
    keys = _cache_keys(tmp_path / "probe.json", train, monkeypatch)
    fresh, loop, bmm = tmp_path / "fresh.json", tmp_path / "loop.json", tmp_path / "bmm.json"
    for path in (loop, bmm):  # pre-seeded: every layer of the model at this batch to another choice
        path.write_text(json.dumps(dict.fromkeys(keys, path.stem)))
    runs = [_train(path, train, test) for path in (fresh, loop, bmm)]
    for result, used in runs:
        assert result["status"] == "ok" and result["strategy"] == TRAINING_STRATEGY
        assert set(used) == {TRAINING_STRATEGY}
    (first, _), *others = runs
    for result, _ in others:  # bit-identical, not close: the same summation order all the way
        assert (result["top1"], result["loss"]) == (first["top1"], first["loss"])
        assert [h["train_loss"] for h in result["history"]] == [h["train_loss"] for h in first["history"]]


def test_a_forced_strategy_is_honoured() -> None:
    assert training_strategy() == TRAINING_STRATEGY
    with psc.use_strategy("loop"):
        assert training_strategy() == "loop"
    with psc.use_strategy("auto"):  # asking for the tuner still trains with the fixed choice
        assert training_strategy() == TRAINING_STRATEGY

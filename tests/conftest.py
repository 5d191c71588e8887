"""Shared fixtures. Every test process runs one torch/OpenMP thread unless a test asks for more
(`@pytest.mark.threads(n)`): two spinning OpenMP threads per process on a loaded 2-core machine are many times
slower than one. Subprocesses inherit the environment, so workers start with one thread too."""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # before torch is imported: its OpenMP pool reads them
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import dynconv_bench  # noqa: E402
from dynconv_bench.models.backbones import STANDARD_BACKBONES  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
TEST_THREADS = torch.get_num_threads()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "threads(n): run the test with n torch threads (default: one)")


@pytest.fixture(autouse=True)
def _threads(request: pytest.FixtureRequest):  # noqa: ANN202
    """One torch thread per test (or the marker's count), and the count restored after it, whatever it did."""
    marker = request.node.get_closest_marker("threads")
    torch.set_num_threads(int(marker.args[0]) if marker else TEST_THREADS)
    yield
    torch.set_num_threads(TEST_THREADS)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _isolated_registry():  # noqa: ANN202
    """Variants a test registers (plugin files, toy variants) do not leak into later tests."""
    from dynconv_bench.models import registry

    registry.list_variants()  # load the entry points first, so they are part of the snapshot
    saved = dict(registry._VARIANTS)
    yield
    registry._VARIANTS.clear()
    registry._VARIANTS.update(saved)


@pytest.fixture
def no_tf32():  # noqa: ANN201
    """fp32 convs and matmuls in IEEE fp32 for the test (restored after), through the installed torch's API."""
    from dynconv_bench.models.tf32 import tf32_switches

    with tf32_switches(conv=False, matmul=False):
        yield


@pytest.fixture(scope="session")
def variant_names() -> list[str]:
    return dynconv_bench.list_variants()


def small_input_size(backbone: str) -> tuple[int, int, int]:
    """A small input that every listed backbone accepts (keeps CPU tests fast)."""
    return (3, 32, 32) if backbone.startswith("cifar_") else (3, 64, 64)


def assert_channels_last_and_bf16_match_float32(model: torch.nn.Module) -> None:
    """An eval-mode model gives the float32 result on channels_last input and, loosely, under bf16 autocast."""
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.05


__all__ = ["STANDARD_BACKBONES", "assert_channels_last_and_bf16_match_float32", "small_input_size"]


# -- dynamic convs (CondConv, DyConv, ODConv): conv shapes every per-sample reference test covers --
DYNAMIC_CONV_CASES = [
    # (in, out, kernel, stride, padding, dilation, groups, bias)
    pytest.param((8, 12, 1, 1, 0, 1, 1, False), id="k1"),
    pytest.param((8, 12, 1, 2, 0, 1, 1, True), id="k1-s2-bias"),
    pytest.param((8, 12, 3, 1, 1, 1, 1, True), id="k3-bias"),
    pytest.param((8, 8, 3, 2, 1, 1, 1, False), id="k3-s2"),
    pytest.param((6, 10, 5, 1, 2, 1, 1, True), id="k5-bias"),
    pytest.param((8, 12, 3, 1, 2, 2, 1, False), id="k3-dil2"),
    pytest.param((4, 6, 3, 1, 0, 1, 1, False), id="k3-nopad"),
    pytest.param((8, 12, 3, 2, 1, 1, 4, True), id="k3-s2-g4-bias"),
    pytest.param((8, 8, 3, 1, 1, 1, 8, True), id="dw3-bias"),
    pytest.param((8, 8, 5, 2, 2, 1, 8, False), id="dw5-s2"),
    pytest.param((8, 16, 3, 1, "same", 1, 1, False), id="k3-same"),
]


@pytest.fixture(params=["grouped", "loop", "bmm", "output_space", "auto"])
def strategy(request):  # noqa: ANN001, ANN201
    """Run the test under each per-sample conv strategy (output_space falls back to grouped without a mixture)."""
    from dynconv_bench.models.per_sample_conv import clear_strategy_cache, use_strategy

    clear_strategy_cache()
    with use_strategy(request.param):
        yield request.param


def make_case_conv(case: tuple) -> torch.nn.Conv2d:
    """The nn.Conv2d a DYNAMIC_CONV_CASES entry describes."""
    cin, cout, k, stride, padding, dilation, groups, bias = case
    return torch.nn.Conv2d(cin, cout, k, stride, padding, dilation, groups, bias)


# -- suites / runner / store (issue 7) ------------------------------------------------------------
TINY_SUITE = """
name = "tiny"
backbones = ["cifar_resnet8"]
variants = ["static", "static-se"]

[measure.params]
"""


@pytest.fixture
def write_suite(tmp_path):  # noqa: ANN001, ANN201
    """Write a suite file into tmp_path and return its path: write_suite(text, name="tiny")."""

    def write(text: str = TINY_SUITE, name: str = "tiny"):  # noqa: ANN202
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        return path

    return write

"""The ray executor never hangs (issue 35, item 3).

A head that does not answer stops the run with one line and exit 2 within the timeout; a malformed address is
refused at once; a second run that would start its own local Ray is refused; a cell no node can hold fails at
once and the run goes on. Only the last test starts a Ray (a local one of 2 CPUs): `-m slow`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynconv_bench.cli.main import main
from dynconv_bench.errors import UserError
from dynconv_bench.execution import executors_ray

SUITE = """
name = "tiny"
backbones = ["cifar_resnet8"]
variants = ["static"]

[measure.params]
num_classes = 10
"""


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(SUITE)
    return path


@pytest.fixture
def silent_head() -> Iterator[str]:
    """HOST:PORT of a socket that listens, lets the kernel complete every connection, and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], float]:
    start = time.monotonic()
    code = main(argv)
    elapsed = time.monotonic() - start
    return code, capsys.readouterr().err.splitlines(), elapsed


def _argv(suite: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["run", str(suite), "--executor", "ray", "--db", str(tmp_path / "r.sqlite"), "--no-plots",
            "--no-progress", *extra]


def test_a_malformed_address_is_refused_at_once(suite_file: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, err, elapsed = _run(_argv(suite_file, tmp_path, "--ray-address", "127.0.0.1:99999"), capsys)
    assert code == 2 and len(err) == 1 and elapsed < 5, (code, err, elapsed)
    assert "Ray address '127.0.0.1:99999' is not HOST:PORT with a port in 1..65535" in err[0]
    assert not (tmp_path / "r.sqlite").exists()  # refused before the store is opened
    assert executors_ray.parse_ray_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert executors_ray.parse_ray_address("ray://head.lan:10001") == ("head.lan", 10001)
    assert executors_ray.parse_ray_address("[::1]:6379") == ("::1", 6379)
    assert executors_ray.parse_ray_address("auto") is None
    for bad in ("127.0.0.1:0", "127.0.0.1", "127.0.0.1:", ":6379", "host:63 79", "http://h:1"):
        with pytest.raises(UserError, match="is not HOST:PORT"):
            executors_ray.parse_ray_address(bad)


def test_a_closed_port_is_refused_at_once(suite_file: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    port = _closed_port()
    code, err, elapsed = _run(_argv(suite_file, tmp_path, "--ray-address", f"127.0.0.1:{port}"), capsys)
    assert code == 2 and len(err) == 1 and elapsed < 5, (code, err, elapsed)
    assert f"no Ray head at 127.0.0.1:{port}: connection refused" in err[0]


def test_a_head_that_never_answers_stops_the_run_within_the_timeout(
        suite_file: Path, tmp_path: Path, silent_head: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err, elapsed = _run(_argv(suite_file, tmp_path, "--ray-address", silent_head, "--ray-timeout", "2"), capsys)
    assert code == 2 and len(err) == 1, (code, err)
    assert 1.9 <= elapsed < 4, elapsed
    assert err[0].startswith(f"dynconv-bench: error: the Ray head at {silent_head} did not answer within 2 s")


def test_the_cli_exits_2_with_one_line_on_a_silent_head(suite_file: Path, tmp_path: Path, silent_head: str) -> None:
    """The whole command, as issue 35 ran it (it hung 150 s, then printed a native stack): the env sets the timeout."""
    env = {**os.environ, "DYNCONV_RAY_TIMEOUT": "2"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "dynconv_bench.cli", *_argv(suite_file, tmp_path, "--ray-address",
                                                                               silent_head)],
                          capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [f"dynconv-bench: error: the Ray head at {silent_head} did not answer within "
                                        "2 s (--ray-timeout or $DYNCONV_RAY_TIMEOUT; the head: `ray start --head "
                                        f"--port={silent_head.rsplit(':', 1)[1]}`)"]
    assert elapsed < 100, elapsed  # interpreter and imports on a busy machine (~30 s on 2 shared cores), plus 2 s
    with pytest.raises(UserError, match="DYNCONV_RAY_TIMEOUT='soon' is not a number"):
        os.environ["DYNCONV_RAY_TIMEOUT"] = "soon"
        try:
            executors_ray.ray_timeout()
        finally:
            del os.environ["DYNCONV_RAY_TIMEOUT"]
    assert executors_ray.ray_timeout() == 30.0 and executors_ray.ray_timeout(2) == 2.0


def test_a_head_that_greets_but_never_serves_ends_the_cli_within_the_timeout(suite_file: Path, tmp_path: Path) -> None:
    """Past the probe (a gRPC greeting), ray.init can still wait in native code: the CLI's watchdog ends it."""
    import threading

    server = socket.socket()
    server.bind(("0.0.0.0", 0))  # Ray connects to this machine's own address rather than 127.0.0.1
    server.listen(16)
    server.settimeout(0.2)
    port, peers, stop = server.getsockname()[1], [], threading.Event()

    def greet() -> None:  # an HTTP/2 SETTINGS frame, then silence
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            peers.append(conn)
            conn.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")

    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    try:
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "dynconv_bench.cli", *_argv(
            suite_file, tmp_path, "--ray-address", f"127.0.0.1:{port}", "--ray-timeout", "3")],
            capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        thread.join(5)
        for conn in peers:
            conn.close()
        server.close()
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"dynconv-bench: error: the Ray head at 127.0.0.1:{port} answered, but Ray could not connect to it within "
        "3 s"], proc.stderr[-3000:]
    assert peers and elapsed < 100, elapsed  # startup on a busy machine, plus 3 s
    assert not (tmp_path / "r.sqlite").exists()


@pytest.fixture
def local_lock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """This machine's local-Ray lock, moved to tmp_path; no RAY_ADDRESS and no `ray start` Ray recorded."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray is already connected in this process")
    path = tmp_path / "local-ray.lock"
    monkeypatch.setattr(executors_ray, "local_ray_lock_path", lambda: str(path))
    monkeypatch.setattr(executors_ray, "_LOCAL_LOCK", [])
    monkeypatch.setattr(executors_ray, "_recorded_ray_address", lambda: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return path


def test_a_second_run_does_not_start_a_second_local_ray(local_lock: Path) -> None:
    import fcntl

    import ray

    other = os.open(local_lock, os.O_RDWR | os.O_CREAT)  # another run holds the lock (its own open file)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        os.write(other, b"4242")
        with pytest.raises(UserError) as refused:
            executors_ray.RayExecutor().connect()
        assert str(refused.value).startswith("another run (pid 4242) has started a local Ray on this machine, and "
                                             "the timed cells of two Ray clusters are not kept apart")
        assert "`ray start --head`" in str(refused.value) and not ray.is_initialized()  # no Ray was started
    finally:
        os.close(other)
    executors_ray.hold_local_ray_lock()  # free now: this process takes it, and names itself for the next run
    try:
        assert local_lock.read_text() == str(os.getpid())
    finally:
        os.close(executors_ray._LOCAL_LOCK.pop())


def test_a_recorded_ray_that_is_gone_does_not_hang(local_lock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `ray start` head recorded in Ray's temp folder but since killed: ray.init() would wait on it; we say so."""
    port = _closed_port()
    monkeypatch.setattr(executors_ray, "_recorded_ray_address", lambda: f"127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(UserError, match=f"no Ray head at 127.0.0.1:{port}: connection refused"):
        executors_ray.RayExecutor(timeout=2).connect()
    assert time.monotonic() - start < 5 and not local_lock.exists()  # joining a head takes no local lock


def fake_measure(cell: dict, plugins: tuple = ()) -> dict:
    """Every cell that reaches a worker succeeds at once (module level: Ray imports it)."""
    return {"values": {"n": 1}, "status": "ok", "error": None, "environment": {"host": "test"}, "started": None,
            "finished": None}


def _ddp(gpus: int, nodes: int = 1, device: str = "cpu") -> dict:
    return {"datasets": ["digits"], "recipe": "digits-quick", "epochs": 1, "threads": 1, "gpus": gpus,
            "nodes": nodes, "device": device, "overrides": {"batch_size": 60}}


@pytest.mark.xdist_group("ray")  # one Ray at a time: a second ray.init finds the first one's cluster
@pytest.mark.slow
def test_cells_no_node_can_hold_fail_at_once_and_the_run_goes_on(tmp_path: Path) -> None:
    """`gpus = 4` on 2 CPUs and `gpus = 3, nodes = 3` on one node hung (Ray Train waited for its workers forever)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.train")
    from dynconv_bench.execution.runner import run_suite
    from dynconv_bench.execution.store import ResultStore
    from dynconv_bench.execution.suite import parse_suite

    def suite(name: str, accuracy: dict) -> dict:
        return {"name": name, "backbones": ["cifar_resnet8"], "variants": ["static"],
                "measure": {"accuracy": accuracy, "params": {"num_classes": 10}}}

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        host = ray.nodes()[0]["NodeManagerHostname"]
        have = f"(nodes: {host} 2 CPU 0 GPU)"
        cases = [(_ddp(4), f"it needs 4 DDP workers of 1 CPU each, on one node (STRICT_PACK) {have}"),
                 (_ddp(3, 3), f"it needs 3 DDP workers of 1 CPU each, each on its own node (3 nodes) "
                              f"(STRICT_SPREAD) {have}"),
                 (_ddp(2, device="cuda"), f"it needs 2 DDP workers of 1 CPU and 1 GPU each, on one node (STRICT_PACK) "
                                          f"{have}")]
        with ResultStore(tmp_path / "r.sqlite") as store:
            for i, (accuracy, why) in enumerate(cases):
                start = time.monotonic()
                summary = run_suite(parse_suite(suite(f"s{i}", accuracy)), store,
                                    executor=executors_ray.RayExecutor(fn=fake_measure, poll_s=0.5), progress=False)
                assert time.monotonic() - start < 90  # Ray workers start on a busy machine; not a hang
                assert summary.ran == 2 and len(summary.failed) == 1, summary.describe()
                ((label, error),) = summary.failed
                assert "accuracy" in label
                assert error == f"no live node of the Ray cluster can hold this cell: {why}"
                assert [r["kind"] for r in store.rows(suite=f"s{i}", status="ok")] == ["params"]  # the run went on
            fits = run_suite(parse_suite(suite("fits", _ddp(2))), store,  # 2 workers of 1 CPU on 2 CPUs: submitted
                             executor=executors_ray.RayExecutor(fn=fake_measure, poll_s=0.5), progress=False)
            assert fits.ok and fits.ran == 2
        # a head that answers: the probe lets the CLI through, and what ray.init said is written out after it
        head = ray.get_runtime_context().gcs_address
        (tmp_path / "tiny.toml").write_text(SUITE)
        (tmp_path / "cli").mkdir()
        proc = subprocess.run([sys.executable, "-m", "dynconv_bench.cli", *_argv(
            tmp_path / "tiny.toml", tmp_path / "cli", "--ray-address", head, "--ray-timeout", "20")],
            capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "suite tiny: 1 cells, 1 run" in proc.stdout and "Connecting to existing Ray cluster" in proc.stderr
    finally:
        ray.shutdown()

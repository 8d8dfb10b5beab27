"""`bushu serve --workers 2`: two processes on one port, one server to its clients.

To know which worker answers, the tests freeze one worker (SIGSTOP): a frozen process cannot
accept, so every new connection goes to the other one. Each request opens a new connection.
"""

import glob
import os
import re
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from fixtures.servers import ProcessServer

TINY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 6], "data": [0.5] * 6}]}
SLOWER = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [16, 1024], "data": np.ones(16 * 1024).tolist()}]}


def worker_pids(server: ProcessServer, count: int = 2) -> list[int]:
    """The workers' pids, from the lines the CLI prints once all are ready."""
    deadline = time.monotonic() + 30
    while True:
        pids = [int(m.group(1)) for m in map(re.compile(r"^worker (\d+): RSS").search, server.lines) if m]
        if len(pids) == count:
            return pids
        assert time.monotonic() < deadline, server.lines
        time.sleep(0.05)


class only:
    """Every other worker frozen while inside: new connections reach `pid` alone."""

    def __init__(self, pid: int, pids: list[int]) -> None:
        self.others = [p for p in pids if p != pid]

    def __enter__(self) -> None:
        for p in self.others:
            os.kill(p, signal.SIGSTOP)

    def __exit__(self, *exc) -> None:
        for p in self.others:
            os.kill(p, signal.SIGCONT)


def ok_count(metrics: str, model: str, version: str) -> float:
    line = f'bushu_requests_total{{model="{model}",outcome="ok",version="{version}"}}'
    return sum(float(ln.split()[-1]) for ln in metrics.splitlines() if ln.startswith(line))


def test_two_workers_share_one_port_and_their_metrics(repository):
    with ProcessServer(str(repository), "--workers", "2", "--threads", "1") as server:
        pids = worker_pids(server)
        assert len(set(pids)) == 2 and server.process.pid not in pids
        answered = {}
        for pid, n in zip(pids, (5, 3)):
            with only(pid, pids):
                answered[pid] = [httpx.post(f"{server.url}/v2/models/tiny/versions/1/infer", json=TINY).status_code
                                 for _ in range(n)]
        assert answered == {pids[0]: [200] * 5, pids[1]: [200] * 3}
        for pid in pids:  # whichever worker is scraped, it reports both workers' requests
            with only(pid, pids):
                assert ok_count(httpx.get(f"{server.url}/metrics").text, "tiny", "1") == 8


def test_load_and_unload_reach_every_worker(repository):
    with ProcessServer(str(repository), "--workers", "2", "--threads", "1") as server:
        pids = worker_pids(server)
        # asked of one worker (not frozen: it waits for every worker to follow) …
        assert httpx.post(f"{server.url}/v2/repository/models/heads/unload").status_code == 200
        for pid in pids:  # … done by both by the time it answered
            with only(pid, pids):
                assert httpx.get(f"{server.url}/v2/models/heads/ready").status_code == 400
                index = {e["name"]: e["state"] for e in httpx.post(f"{server.url}/v2/repository/index").json()}
                assert index["heads"] == "UNAVAILABLE"
        assert httpx.post(f"{server.url}/v2/repository/models/heads/load").status_code == 200
        for pid in pids:
            with only(pid, pids):
                assert httpx.get(f"{server.url}/v2/models/heads/ready").status_code == 200
        unloads = [ln for ln in server.lines if "action=unload model=heads" in ln]
        assert len(unloads) == 2  # one audit line per worker
        bad = httpx.post(f"{server.url}/v2/repository/models/nothing-here/load")
        assert bad.status_code == 404 and "no model 'nothing-here'" in bad.json()["error"]


def test_a_worker_that_dies_is_replaced_and_catches_up(repository):
    with ProcessServer(str(repository), "--workers", "2", "--threads", "1") as server:
        pids = worker_pids(server)
        assert httpx.post(f"{server.url}/v2/repository/models/gru/unload").status_code == 200
        os.kill(pids[0], signal.SIGKILL)
        with only(-1, [pids[1]]):  # the survivor frozen: only a replacement can answer
            deadline = time.monotonic() + 90
            while True:
                try:
                    status = httpx.get(f"{server.url}/v2/models/tiny/ready", timeout=2).status_code
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "no replacement worker answered"
            assert status == 200
            assert httpx.get(f"{server.url}/v2/models/gru/ready").status_code == 400  # it replayed the unload
            assert httpx.get(f"{server.url}/v2/models/heads/ready").status_code == 200


def read_by_server(text: str) -> float:
    """Slow requests queued or answered, over every worker."""
    wanted = ("bushu_queue_depth{", 'bushu_requests_total{model="slow",outcome="ok"')
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(wanted))


def test_sigterm_drains_every_worker(slow_package):
    with ProcessServer(str(slow_package), "--workers", "2", "--max-batch-size", "16", "--threads", "1") as server:
        pids = worker_pids(server)
        folders = glob.glob(os.path.join(tempfile.gettempdir(), f"bushu-workers-{server.process.pid}-*"))
        assert len(folders) == 1
        with ThreadPoolExecutor(8) as pool:
            futures = []
            for i, pid in enumerate(pids):  # four slow requests read by each worker (one runs, three queue)
                with only(pid, pids):
                    futures += [pool.submit(httpx.post, server.url + "/v2/models/slow/infer", json=SLOWER, timeout=60)
                                for _ in range(4)]
                    deadline = time.monotonic() + 30
                    while read_by_server(httpx.get(server.url + "/metrics").text) < 3 * (i + 1):
                        assert time.monotonic() < deadline, "requests never reached the worker"
            code = server.terminate()
            statuses = [f.result().status_code for f in futures]
    assert statuses == [200] * 8
    assert code == 0
    assert not os.path.exists(folders[0])  # the metrics and control folder went with it
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_a_supervisor_killed_outright_takes_its_workers_and_folder_with_it(repository):
    with ProcessServer(str(repository), "--workers", "2", "--threads", "1") as server:
        pids = worker_pids(server)
        folders = glob.glob(os.path.join(tempfile.gettempdir(), f"bushu-workers-{server.process.pid}-*"))
        assert len(folders) == 1
        server.process.kill()
        deadline = time.monotonic() + 60
        while any(alive(pid) for pid in pids):
            assert time.monotonic() < deadline, "a worker outlived its supervisor"
            time.sleep(0.1)
    assert not os.path.exists(folders[0])


@pytest.mark.parametrize("args, message", [
    (["--replicas", "2"], "--address, --replicas and --autoscale go with --ray"),
    (["--ray", "--workers", "2"], "--workers and --ray do not go together"),
    (["--ray", "--replicas", "2", "--autoscale", "1,2"], "not both"),
    (["--ray", "--autoscale", "4"], "--autoscale takes MIN,MAX"),
    (["--ray", "--autoscale", "3,1"], "0 ≤ MIN ≤ MAX"),
    (["--workers", "2", "--grpc-port", "0"], "--grpc-port serves from one process"),
    (["--ray", "--grpc-port", "0"], "--grpc-port serves from one process"),
])
def test_scale_out_options_are_checked_before_anything_starts(tiny_package, args, message):
    from typer.testing import CliRunner

    from bushu.cli import app

    result = CliRunner().invoke(app, ["serve", str(tiny_package), "--port", "0", *args])
    assert result.exit_code != 0
    assert message in result.output

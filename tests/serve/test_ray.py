"""`bushu serve --ray`: models as Ray Serve deployments behind the same V2 routes.

Slow (a local Ray instance takes 10-30 s to start here): run with `-m slow`. Ray is started
the way `bushu serve --ray` starts it (`serve.rayserve.local`): 2 CPUs, no dashboard, usage
stats off, bound to 127.0.0.1; `test_ray_connects_only_to_loopback` proves no connection
leaves 127.0.0.0/8.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from bushu.serve.settings import ServeSettings
from fixtures.servers import ThreadServer

pytestmark = pytest.mark.slow
pytest.importorskip("ray.serve")


@pytest.fixture(scope="module")
def local_ray():
    from bushu.serve.rayserve import local

    owned = local.start(num_cpus=2)
    local.start_serve()
    yield
    if owned:
        local.stop()


def two_replicas():
    from bushu.serve.rayserve.front import Scaling, ray_plane

    return ray_plane(Scaling(replicas=2, replica_cpus=0.5))


def requests_for(width: int, count: int = 100) -> list[dict]:
    rng = np.random.default_rng(7)
    return [{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, width],
                         "data": rng.standard_normal(width).astype(np.float32).tolist()}]} for _ in range(count)]


def send_all(url: str, model: str, bodies: list[dict], during=None) -> list[httpx.Response]:
    """POST every body (16 at a time); `during(answered)` runs once a quarter of them are answered."""
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(httpx.post, f"{url}/v2/models/{model}/infer", json=b, timeout=120) for b in bodies]
        if during is not None:
            while sum(f.done() for f in futures) < len(bodies) // 4:
                pass
            during()
        return [f.result() for f in futures]


def outputs(responses: list[httpx.Response]) -> list[list[float]]:
    assert [r.status_code for r in responses] == [200] * len(responses), {r.text for r in responses if r.status_code != 200}
    return [r.json()["outputs"][0]["data"] for r in responses]


def test_the_same_100_requests_through_two_replicas_and_directly(local_ray, tiny_package):
    bodies = requests_for(6)
    with ThreadServer([tiny_package]) as direct:
        expected = outputs(send_all(direct.url, "tiny", bodies))
    with ThreadServer([tiny_package], dataplane=two_replicas()) as front:
        got = outputs(send_all(front.url, "tiny", bodies))
        metadata = httpx.get(f"{front.url}/v2/models/tiny").json()
        bad = httpx.post(f"{front.url}/v2/models/tiny/infer",
                         json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 5], "data": [0] * 5}]})
        from ray import serve

        status = serve.status().applications["tiny"]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)  # batches differ, so the last ulp may
    assert metadata["name"] == "tiny" and metadata["inputs"][0]["name"] == "x"
    assert bad.status_code == 400 and "x" in bad.json()["error"]  # refused by the same checks
    assert status.status == "RUNNING"
    assert len(status.deployments["bushu-tiny"].replica_states) == 1  # states → counts
    assert sum(status.deployments["bushu-tiny"].replica_states.values()) == 2


def test_killing_a_replica_mid_run_loses_no_request(local_ray, slow_package):
    import ray

    bodies = requests_for(1024)
    with ThreadServer([slow_package], ServeSettings(max_batch_size=16)) as direct:
        expected = outputs(send_all(direct.url, "slow", bodies))
    killed = []

    def kill_one_replica():
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith("SERVE_REPLICA::slow#")]
        assert len(names) == 2, names
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
        killed.append(names[0])

    with ThreadServer([slow_package], ServeSettings(max_batch_size=16), dataplane=two_replicas()) as front:
        got = outputs(send_all(front.url, "slow", bodies, during=kill_one_replica))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    now = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    assert killed and killed[0] not in now  # it was really gone (Serve starts a replacement)


def test_ray_connects_only_to_loopback(tiny_package, tmp_path):
    """`bushu serve --ray` (a fresh local Ray instance, two replicas, one request) under
    `strace -f -e trace=connect`: every connect() goes to 127.0.0.0/8, ::1 or a unix socket."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    trace = tmp_path / "connect.trace"
    command = ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace), sys.executable, "-m", "bushu.cli",
               "serve", str(tiny_package), "--ray", "--replicas", "2", "--port", "0"]
    log = tmp_path / "serve.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while not (match := re.search(r"serving on (http://[\d.]+:\d+)", log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        answer = httpx.post(f"{match.group(1)}/v2/models/tiny/infer", json=requests_for(6, 1)[0], timeout=60)
        assert answer.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    calls = [ln for ln in trace.read_text().splitlines() if "connect(" in ln]
    inet = [ln for ln in calls if "AF_INET" in ln]
    addresses, unparsed = set(), []
    for ln in inet:
        m = re.search(r'inet_addr\("([^"]+)"\)', ln) or re.search(r'inet_pton\(AF_INET6, "([^"]+)"', ln)
        if m:
            addresses.add(m.group(1))
        else:
            unparsed.append(ln)
    outside = {a for a in addresses if not (a.startswith("127.") or a in ("::1",) or a.startswith("::ffff:127."))}
    print(f"{len(calls)} connect() calls: {len(inet)} to IP addresses {sorted(addresses)}, "
          f"{len(calls) - len(inet)} to unix/other sockets")
    assert len(inet) > 0  # the trace did see Ray's own TCP connections
    assert not outside, f"connections outside 127.0.0.0/8: {outside}"
    assert not unparsed, unparsed[:5]

"""schemathesis against `/v2/openapi.json` of a real `bushu serve` holding the four demo models:
thousands of generated requests, valid and invalid, on every route; none may be answered 500
and no connection may drop.

The document names each loaded model in its own paths with request bodies cut to it (tensor
names, datatypes, shapes and data lengths; natural inputs with their id ranges), so positive
cases reach the models; negative cases break one rule of the schema at a time. Generation is
derandomised: CI sees the same cases every run.
"""

from __future__ import annotations

import collections
import time

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from fixtures.servers import ProcessServer  # noqa: E402

#: Cases per operation and generation mode: about 20 operations have inputs to vary, × 2 modes
#: gives > 2,000 cases (operations without parameters or body have one case each).
EXAMPLES = 52
MINIMUM_CASES = 2000


@pytest.fixture(scope="module")
def four_models(vision_package, text_package, recsys_package, minilm_package):
    from bushu.package import read_manifest

    packages = [vision_package, text_package, recsys_package, minilm_package]
    with ProcessServer(*map(str, packages), "--log-level", "warning", "--timeout", "20") as server:
        yield server, [read_manifest(p).name for p in packages]


def fuzz(url: str, names: list[str], examples: int = EXAMPLES) -> tuple[collections.Counter, list[str], float]:
    """Every operation of the server's document, positive then negative cases: (statuses by
    operation, failures, seconds)."""
    import requests

    schema = schemathesis.openapi.from_url(url + "/v2/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    for name in names:  # the models are pinned in the document
        assert f"/v2/models/{name}/infer" in paths and f"/v1/models/{name}/predict" in paths, sorted(paths)

    statuses: collections.Counter[tuple[str, int]] = collections.Counter()
    failures: list[str] = []
    seconds: dict[str, float] = {}
    session = requests.Session()
    started = time.monotonic()
    for operation in operations:
        op_started = time.monotonic()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                strategy = operation.as_strategy(generation_mode=mode)
            except Exception as exc:  # nothing negative to generate (no parameters, no body)
                if mode is GenerationMode.NEGATIVE:
                    continue
                raise AssertionError(f"{operation.label}: {exc}") from exc

            @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def send(case) -> None:
                try:
                    response = case.call(session=session, base_url=url, timeout=30)
                except requests.ConnectionError as exc:
                    failures.append(f"dropped connection: {case.as_curl_command()[:600]} ({exc})")
                    return
                statuses[(operation.label, response.status_code)] += 1
                if response.status_code >= 500 and response.status_code not in (503, 504):
                    failures.append(f"{response.status_code} {response.text[:200]}: {case.as_curl_command()[:600]}")

            try:
                send()
            except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters, no body)
                if mode is not GenerationMode.NEGATIVE:
                    raise
        seconds[operation.label] = time.monotonic() - op_started
    slowest = sorted(seconds.items(), key=lambda kv: -kv[1])[:5]
    print("slowest operations:", ", ".join(f"{label} {t:.1f} s" for label, t in slowest))
    return statuses, failures, time.monotonic() - started


@pytest.mark.timeout(900)  # the four packages may be built in its setup: minutes on a busy machine
def test_no_generated_request_gets_a_500_or_a_dropped_connection(four_models):
    server, names = four_models
    statuses, failures, elapsed = fuzz(server.url, names)
    total = sum(statuses.values())
    reached = sum(n for (label, status), n in statuses.items() if status == 200 and "/infer" in label)
    summary = f"{total} cases in {elapsed:.0f} s; 200s on infer routes: {reached}"
    assert not failures, f"{summary}\n" + "\n".join(failures[:20])
    assert total >= MINIMUM_CASES, summary
    for name in names:  # requests did reach every model
        assert statuses[(f"POST /v2/models/{name}/infer", 200)] > 0, (name, summary)
    assert server.process.poll() is None  # and the server is still up

"""Generation served over HTTP: Triton's generate extension (SSE parsed by hand), the `openai`
client unchanged, continuous batching that changes no answer, disconnects, bad input, overload."""

import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from bushu.serve.settings import ServeSettings
from fixtures.servers import ThreadServer


@pytest.fixture(scope="module")
def server(gpt2_package, t5_package):
    with ThreadServer([gpt2_package, t5_package], ServeSettings(threads=1)) as running:
        yield running


def sse(response: httpx.Response) -> list[dict]:
    """Server-sent events by hand: `data: <json>` lines, blank-line separated, `[DONE]` last for OpenAI."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(orjson.loads(line[6:]))
    return events


def generate(url: str, model: str, text: str, **parameters) -> dict:
    response = httpx.post(f"{url}/v2/models/{model}/generate", json={"text_input": text, "parameters": parameters},
                          timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def metric(url: str, name: str, model: str = "tiny-gpt2") -> float:
    text = httpx.get(f"{url}/metrics").text
    match = re.search(rf'^{name}{{model="{model}",version="1"}} ([0-9.e+-]+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


REQUESTS = [  # different prompts and lengths, greedy and seeded sampling
    ("the cat", {"max_tokens": 3}),
    ("a long time ago in a land far away there lived", {"max_tokens": 24, "ignore_eos": True}),
    ("hello", {"max_tokens": 9, "temperature": 2.0, "seed": 1, "ignore_eos": True}),
    ("we went to the market", {"max_tokens": 17, "temperature": 3.0, "top_k": 20, "seed": 2, "ignore_eos": True}),
    ("one", {"max_tokens": 5}),
    ("the quick brown fox jumps over", {"max_tokens": 12, "repetition_penalty": 1.3, "ignore_eos": True}),
    ("it was the best of times", {"max_tokens": 20, "temperature": 1.5, "top_p": 0.9, "seed": 3, "ignore_eos": True}),
    ("x y z", {"max_tokens": 7, "ignore_eos": True}),
]


def test_eight_concurrent_streams_each_get_what_a_lone_request_gets(server):
    alone = [generate(server.url, "tiny-gpt2", text, **params) for text, params in REQUESTS]
    barrier = threading.Barrier(len(REQUESTS))

    def stream(item):
        text, params = item
        barrier.wait()
        with httpx.stream("POST", f"{server.url}/v2/models/tiny-gpt2/generate_stream",
                          json={"text_input": text, "parameters": params}, timeout=60) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            return sse(response)

    with ThreadPoolExecutor(len(REQUESTS)) as pool:
        streamed = list(pool.map(stream, REQUESTS))
    for lone, events, (_, params) in zip(alone, streamed, REQUESTS):
        assert "".join(e["text_output"] for e in events) == lone["text_output"]
        assert events[-1]["finish_reason"] == lone["finish_reason"]
        assert events[-1]["completion_tokens"] == lone["completion_tokens"] == len(events)
        if params.get("ignore_eos"):
            assert len(events) == params["max_tokens"]


def test_the_openai_client_works_unchanged_streamed_or_not(server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    assert "tiny-gpt2" in [m.id for m in client.models.list()]
    whole = client.completions.create(model="tiny-gpt2", prompt="the cat sat", max_tokens=12, extra_body={"ignore_eos": True})
    assert whole.usage.completion_tokens == 12 and whole.usage.prompt_tokens > 0
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + 12
    assert whole.choices[0].finish_reason == "length"
    assert whole.choices[0].text == generate(server.url, "tiny-gpt2", "the cat sat", max_tokens=12, ignore_eos=True)["text_output"]
    chunks = list(client.completions.create(model="tiny-gpt2", prompt="the cat sat", max_tokens=12, stream=True,
                                            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == 12

    chat = client.chat.completions.create(model="tiny-gpt2", messages=[{"role": "user", "content": "hi"}], max_tokens=6,
                                          seed=4, temperature=2.0, extra_body={"ignore_eos": True})
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens == 6
    pieces = client.chat.completions.create(model="tiny-gpt2", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=6, seed=4, temperature=2.0, stream=True,
                                            extra_body={"ignore_eos": True})
    assert "".join(c.choices[0].delta.content or "" for c in pieces) == chat.choices[0].message.content

    translated = client.completions.create(model="tiny-t5", prompt="the cat sat", max_tokens=8)
    assert translated.usage.completion_tokens >= 1
    # no max_tokens: the package's default, capped by the room the context leaves (64 here)
    assert generate(server.url, "tiny-t5", "the cat sat")["completion_tokens"] <= 63


def _wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_frees_its_sequence(server, stream):
    before = metric(server.url, "bushu_generated_tokens_total")
    body = {"text_input": "the cat", "parameters": {"max_tokens": 500, "ignore_eos": True}}
    if stream:
        with httpx.stream("POST", f"{server.url}/v2/models/tiny-gpt2/generate_stream", json=body, timeout=60) as r:
            next(r.iter_lines())  # it runs: one token came
    else:  # the whole request sent, then the connection closed at once: nobody waits for the answer
        payload = orjson.dumps(body)
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall(b"POST /v2/models/tiny-gpt2/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
    _wait_for(lambda: metric(server.url, "bushu_sequences_running") == 0, "the sequence to be freed")
    generated = metric(server.url, "bushu_generated_tokens_total") - before
    assert generated < 500  # freed early, not run to its end
    if stream:
        assert generated > 0  # it did run: one token came before the client left


BAD = [
    ("/v1/completions", {"model": "tiny-gpt2", "prompt": "word " * 600}, "'prompt' has \\d+ tokens; the context holds 512"),
    ("/v1/completions", {"model": "tiny-gpt2", "prompt": "hi", "max_tokens": 0}, "'max_tokens' must be at least 1"),
    ("/v1/completions", {"model": "tiny-gpt2", "prompt": "hi", "max_tokens": 600}, "'max_tokens' 600 is past the limit"),
    ("/v1/completions", {"model": "tiny-gpt2", "prompt": "hi", "temprature": 1}, "unknown field\\(s\\) \\['temprature'\\]"),
    ("/v1/completions", {"model": "tiny-gpt2", "prompt": ""}, "'prompt' is empty"),
    ("/v1/completions", {"model": "tiny-gpt2", "prompt": "hi", "n": 2}, "'n' = 2 is not supported"),
    ("/v1/completions", b'{"model": "tiny-gpt2", "prompt": "caf\xe9"}', "'prompt' is not valid UTF-8"),
    ("/v1/completions", b'{"model": "tiny-gpt2", "prompt": "\\ud800"}', "'prompt' is not valid UTF-8"),
    ("/v1/chat/completions", {"model": "tiny-gpt2", "messages": [{"role": "user"}]}, "'messages\\[0\\]' must be"),
    ("/v2/models/tiny-gpt2/generate", {"text_input": ""}, "'text_input' is empty"),
    ("/v2/models/tiny-gpt2/generate_stream", {"text_input": "hi", "parameters": {"top_k": -1}}, "'top_k' must be 0"),
    ("/v2/models/tiny-gpt2/generate", {"parameters": {}}, "'text_input' is missing"),
    ("/v2/models/tiny-t5/generate", {"text_input": "hi", "max_tokens": 64}, "'max_tokens' 64 is past the limit of 63"),
]


def test_bad_input_is_a_400_naming_the_field_and_disturbs_nothing_in_flight(server):
    lone = generate(server.url, "tiny-gpt2", "the cat", max_tokens=60, ignore_eos=True)["text_output"]
    with httpx.stream("POST", f"{server.url}/v2/models/tiny-gpt2/generate_stream",
                      json={"text_input": "the cat", "parameters": {"max_tokens": 60, "ignore_eos": True}},
                      timeout=60) as running:
        lines = running.iter_lines()
        first = next(lines)
        for path, body, message in BAD:
            content = body if isinstance(body, bytes) else orjson.dumps(body)
            response = httpx.post(server.url + path, content=content, headers={"content-type": "application/json"})
            assert response.status_code == 400, (path, body, response.text)
            assert re.search(message, response.json()["error"]), response.json()["error"]
        rest = [first, *lines]
    text = "".join(orjson.loads(line[6:])["text_output"] for line in rest if line.startswith("data: "))
    assert text == lone


def test_v2_infer_on_a_generator_says_where_to_go(server):
    response = httpx.post(f"{server.url}/v2/models/tiny-gpt2/infer", json={"inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [1, 1], "data": [1]}]})
    assert response.status_code == 400 and "/generate" in response.json()["error"]
    assert httpx.get(f"{server.url}/v2/models/tiny-gpt2").json()["parameters"]["task"] == "text-generation"


def test_metrics_report_time_to_first_token_inter_token_latency_and_tokens(server):
    generate(server.url, "tiny-gpt2", "hello there", max_tokens=5, ignore_eos=True)
    assert metric(server.url, "bushu_time_to_first_token_seconds_count") >= 1
    assert metric(server.url, "bushu_inter_token_seconds_count") >= 4
    assert metric(server.url, "bushu_generated_tokens_total") >= 5


def test_admission_past_the_cache_bound_waits_then_is_refused_with_retry_after(gpt2_package):
    settings = ServeSettings(threads=1, max_tokens_in_flight=600, max_queue_size=1)
    body = {"text_input": "the cat", "parameters": {"max_tokens": 500, "ignore_eos": True}}
    barrier = threading.Barrier(5)

    def post(_):
        barrier.wait()
        return httpx.post(f"{srv.url}/v2/models/tiny-gpt2/generate", json=body, timeout=60)

    # Each holds 502 of the 600 tokens. The first is running (its first token came) before the
    # other five arrive together: one of them waits for its cache, the four past --max-queue-size
    # are refused. (Five arriving before any runs would leave room for only one to wait.)
    with ThreadServer([gpt2_package], settings) as srv, ThreadPoolExecutor(5) as pool:
        with httpx.stream("POST", f"{srv.url}/v2/models/tiny-gpt2/generate_stream", json=body, timeout=60) as first:
            lines = first.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))
            later = pool.map(post, range(5))
            first_tokens = 1 + sum(1 for line in lines if line.startswith("data: "))
        answers = list(later)
    assert first.status_code == 200 and first_tokens >= 500
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 503, 503, 503, 503], statuses
    for refused in (a for a in answers if a.status_code == 503):
        assert int(refused.headers["retry-after"]) >= 1 and "wait for the cache" in refused.json()["error"]
    for done in (a for a in answers if a.status_code == 200):
        assert done.json()["completion_tokens"] == 500

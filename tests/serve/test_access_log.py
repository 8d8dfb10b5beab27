"""The access log of a real `bushu serve`: one line per request, on the fast infer path and every
other route, as text or JSON, with the request id the client sees in its answer."""

import json
import re

import httpx

from fixtures.servers import ProcessServer, ThreadServer

TINY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 6], "data": [0.5] * 6}]}


def wait_for_lines(server, count, pattern, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [ln for ln in server.lines if pattern in ln]
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} lines with {pattern!r}: {server.lines}")


def test_json_lines_one_per_request_with_the_request_id(tiny_package):
    with ProcessServer(str(tiny_package), "--log-format", "json") as server, httpx.Client(base_url=server.url) as client:
        ok = client.post("/v2/models/tiny/infer", json=TINY, headers={"X-Request-ID": "client-42"})
        bad = client.post("/v2/models/tiny/infer", json={"inputs": []})
        missing = client.post("/v2/models/nope/infer", json=TINY)
        app_route = client.post("/v1/models/tiny/predict", json={"x": [0.1] * 6})
        metadata = client.get("/v2/models/tiny")
        assert (ok.status_code, bad.status_code, missing.status_code, metadata.status_code) == (200, 400, 404, 200)
        assert ok.headers["x-request-id"] == "client-42"
        generated = bad.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        wait_for_lines(server, 1, metadata.headers["x-request-id"])  # the last request's line is out
        lines = [ln for ln in server.lines if '"logger":"bushu.access"' in ln]
    entries = [json.loads(ln) for ln in lines]
    by_id = {e["request_id"]: e for e in entries}
    assert by_id["client-42"] | {"duration_ms": 0, "time": ""} == {
        "time": "", "level": "info", "logger": "bushu.access", "method": "POST", "path": "/v2/models/tiny/infer",
        "model": "tiny", "status": 200, "duration_ms": 0, "request_id": "client-42", "client": "127.0.0.1"}
    assert by_id["client-42"]["duration_ms"] > 0
    assert by_id[generated]["status"] == 400 and by_id[generated]["model"] == "tiny"
    assert by_id[missing.headers["x-request-id"]]["status"] == 404
    assert by_id[app_route.headers["x-request-id"]]["path"] == "/v1/models/tiny/predict"
    assert by_id[metadata.headers["x-request-id"]]["method"] == "GET"


def test_text_lines_and_log_level_warning_silences_them(tiny_package):
    with ProcessServer(str(tiny_package)) as server:
        httpx.post(server.url + "/v2/models/tiny/infer", json=TINY, headers={"X-Request-ID": "t-1"})
        (line,) = wait_for_lines(server, 1, "request_id=t-1")
    assert re.search(r' bushu.access 127.0.0.1 "POST /v2/models/tiny/infer" model=tiny status=200 '
                     r'duration_ms=[\d.]+ request_id=t-1$', line), line
    with ProcessServer(str(tiny_package), "--log-level", "warning") as server:
        assert httpx.post(server.url + "/v2/models/tiny/infer", json=TINY).status_code == 200
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200
    assert not [ln for ln in server.lines if "bushu.access" in ln], server.lines
    assert [ln for ln in server.lines if "bushu.audit" in ln]  # audit lines are kept whatever the level


def test_a_request_id_unsafe_to_echo_is_replaced(tiny_package):
    with ThreadServer([tiny_package]) as server:
        for given in ["x" * 129, "with space", "ünïcode"]:
            r = httpx.post(server.url + "/v2/models/tiny/infer", json=TINY,
                           headers={"X-Request-ID": given.encode("utf-8")})
            assert r.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), given


def test_bad_log_options_are_one_line(tiny_package):
    from typer.testing import CliRunner

    from bushu.cli import app

    for option, value in (("--log-format", "xml"), ("--log-level", "loud")):
        result = CliRunner().invoke(app, ["serve", str(tiny_package), option, value])
        assert result.exit_code == 1 and f"{option} must be one of" in result.output


def test_sigterm_right_after_the_last_answer_loses_no_line(tiny_package):
    """Lines are written in batches off the event loop (`logs.AccessLines`): a server stopped at
    once after its last answer still writes every request's line before it exits."""
    import asyncio

    async def send_all(url: str) -> list[str]:
        async with httpx.AsyncClient(base_url=url) as client:
            async def one(i: int) -> str:
                r = await client.post("/v2/models/tiny/infer", json=TINY, headers={"X-Request-ID": f"last-{i}"})
                assert r.status_code == 200
                return r.headers["x-request-id"]
            return await asyncio.gather(*(one(i) for i in range(200)))

    with ProcessServer(str(tiny_package)) as server:
        ids = asyncio.run(send_all(server.url))
        assert server.terminate() in (0, -15)  # uvicorn re-raises SIGTERM once it has drained
        server.reader.join(10)
        logged = {m[1] for ln in server.lines if (m := re.search(r"request_id=(\S+)$", ln))}
    assert set(ids) <= logged, sorted(set(ids) - logged)[:5]


def test_batched_lines_read_as_logging_would_write_them_and_close_flushes_them():
    """`AccessLines` writes what a `logging` record with the same fields gives through the
    configured formatter, in order, and `close` writes what the timer has not yet."""
    import io
    import logging

    from bushu.serve import logs

    values = ("POST", "/v2/models/m/infer", "m", 200, 1.25, "rid-1", "127.0.0.1")
    fields = dict(zip(logs.ACCESS_FIELDS, values))
    for fmt in logs.FORMATS:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logs.formatter(fmt))
        lines = logs.AccessLines(handler, fmt, interval=3600)  # only close() writes
        record = logging.LogRecord("bushu.access", logging.INFO, __file__, 1, logs.ACCESS_TEXT.format(**fields),
                                   None, None)
        record.fields = fields
        for i in range(3):
            lines.add(record.created, (*values[:5], f"rid-{i}", values[6]))
        assert stream.getvalue() == ""
        lines.close()
        written = stream.getvalue().splitlines()
        assert [ln.replace(f"rid-{i}", "rid-1") for i, ln in enumerate(written)] == [handler.format(record)] * 3, fmt


def test_a_forked_worker_writes_its_own_lines():
    """The writer thread does not survive a fork: a worker process forked after `configure`
    starts its own, and does not write again the lines its parent had not written yet."""
    import os
    import time
    import warnings

    from bushu.serve import logs

    import logging

    bushu_log = logging.getLogger("bushu")
    saved = bushu_log.handlers[:], bushu_log.level, bushu_log.propagate
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    try:
        logs.configure("text", "info", stream=stream)
        logs.access_lines.add(time.time(), ("GET", "/parent", "-", 200, 1.0, "parent-id", "127.0.0.1"))
        with warnings.catch_warnings():  # Python 3.12 warns about forking a threaded process
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: one line, then wait for it to be written without any flush of ours
            logs.access_lines.add(time.time(), ("GET", "/child", "-", 200, 1.0, "child-id", "127.0.0.1"))
            deadline = time.monotonic() + 5
            while logs.access_lines._entries and time.monotonic() < deadline:
                time.sleep(0.01)
            os._exit(0 if not logs.access_lines._entries else 1)
        _, status = os.waitpid(pid, 0)
        logs.access_lines.flush()
        stream.flush()
        os.set_blocking(read_end, False)
        written = os.read(read_end, 1 << 16).decode()
    finally:  # the logging set-up as it was (pytest's capture relies on propagation)
        logs.access_lines.close()
        logs.access_lines = None
        bushu_log.handlers[:], bushu_log.level, bushu_log.propagate = saved
        stream.close()
        os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    assert written.count("request_id=child-id") == 1 and written.count("request_id=parent-id") == 1, written

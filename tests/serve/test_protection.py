"""Protection against a real server on a real port: signatures, encryption, tokens, scopes,
rate limits, path traversal, TLS, audit lines, and overload."""

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import time

import httpx
import numpy as np
import orjson
import pytest

from bushu.package import MANIFEST_NAME, read_manifest
from bushu.package.encryption import encrypt_package, generate_key, load_key
from bushu.package.signing import SIGNATURE_NAME, generate_keypair, sign_package
from bushu.serve.auth import load_tokens
from bushu.serve.settings import ServeSettings
from fixtures.files import flip_byte
from fixtures.servers import ThreadServer
from fixtures.tls import self_signed

TINY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 6], "data": [0.5] * 6}]}


@pytest.fixture(scope="module")
def signing_keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    return root / "k", generate_keypair(root / "k")


@pytest.fixture
def signed_repo(tiny_package, signing_keys, tmp_path):
    repo = tmp_path / "repo"
    pkg = shutil.copytree(tiny_package, repo / "tiny" / "1")
    sign_package(pkg, signing_keys[0])
    return repo


def test_tampered_or_unsigned_packages_are_refused_at_start(signed_repo, signing_keys, tiny_package):
    flip_byte(signed_repo / "tiny" / "1" / "model.onnx", 10)
    done = subprocess.run(
        [sys.executable, "-m", "bushu.cli", "serve", str(signed_repo), "--port", "0",
         "--require-signature", str(signing_keys[1])], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "changed: model.onnx" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "bushu.cli", "serve", str(tiny_package), "--port", "0",
         "--require-signature", str(signing_keys[1])], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "not signed" in done.stderr


def test_the_repository_api_refuses_every_flipped_file_and_an_unsigned_model(signed_repo, signing_keys, tiny_package,
                                                                             caplog):
    settings = ServeSettings(require_signature=signing_keys[1])
    signed = signed_repo / "tiny" / "1"
    files = [MANIFEST_NAME, SIGNATURE_NAME, *read_manifest(signed).files]
    with ThreadServer([signed_repo], settings) as server, caplog.at_level(logging.INFO, "bushu.audit"):
        for rel in files:
            pkg = shutil.copytree(signed, signed_repo / "flipped" / "1", dirs_exist_ok=True)
            flip_byte(pkg / rel, (pkg / rel).stat().st_size // 2)
            r = httpx.post(server.url + "/v2/repository/models/flipped/load")
            assert r.status_code == 403 and rel in r.json()["error"], (rel, r.text)
            assert httpx.get(server.url + "/v2/models/flipped/ready").status_code == 400
            shutil.rmtree(signed_repo / "flipped")
        shutil.copytree(tiny_package, signed_repo / "unsigned" / "1")
        r = httpx.post(server.url + "/v2/repository/models/unsigned/load")
        assert r.status_code == 403 and "not signed" in r.json()["error"]
        assert httpx.post(server.url + "/v2/models/tiny/infer", json=TINY).status_code == 200
    refusals = [r.getMessage() for r in caplog.records if "load-refused" in r.getMessage()]
    assert len(refusals) == len(files) + 1


def test_an_encrypted_package_serves_with_its_key_and_not_without(tiny_package, tmp_path):
    key_file = tmp_path / "aes.key"
    generate_key(key_file)
    enc = tmp_path / "enc"
    encrypt_package(tiny_package, enc, load_key(key_file))
    with ThreadServer([enc], ServeSettings(decrypt_key=load_key(key_file))) as server:
        r = httpx.post(server.url + "/v2/models/tiny/infer", json=TINY)
        assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 3]
    env = {k: v for k, v in os.environ.items() if k != "BUSHU_KEY"}
    done = subprocess.run([sys.executable, "-m", "bushu.cli", "serve", str(enc), "--port", "0"],
                          capture_output=True, text=True, timeout=120, env=env)
    key_id = read_manifest(enc).encryption.key_id
    assert done.returncode != 0 and f"key id {key_id}" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    import hashlib

    path.write_bytes(orjson.dumps({"tokens": [
        {"name": "app", "token": "infer-secret", "scopes": ["infer"]},
        {"name": "ops", "sha256": hashlib.sha256(b"admin-secret").hexdigest(), "scopes": ["infer", "admin"]},
        {"name": "scraper", "token": "slow-secret", "scopes": ["infer"], "rate_per_s": 2, "burst": 3},
    ]}))
    return path


@pytest.fixture(scope="module")
def guarded(repository, token_file):
    with ThreadServer([repository], ServeSettings(tokens=tuple(load_tokens(token_file)))) as server:
        yield server


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


def test_tokens_and_scopes(guarded, caplog):
    url = guarded.url
    assert httpx.get(url + "/v2/health/ready").status_code == 200  # probes stay open
    r = httpx.post(url + "/v2/models/tiny/infer", json=TINY)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert httpx.post(url + "/v2/models/tiny/infer", json=TINY, headers=bearer("nope")).status_code == 401
    assert httpx.post(url + "/v2/models/tiny/infer", json=TINY, headers=bearer("infer-secret")).status_code == 200
    assert httpx.get(url + "/v2/models/tiny", headers=bearer("infer-secret")).status_code == 200
    r = httpx.post(url + "/v2/repository/models/tiny/load", headers=bearer("infer-secret"))
    assert r.status_code == 403 and "'admin' scope" in r.json()["error"]
    assert httpx.get(url + "/metrics", headers=bearer("infer-secret")).status_code == 403
    with caplog.at_level(logging.INFO, "bushu.audit"):
        assert httpx.post(url + "/v2/repository/models/gru/unload", headers=bearer("admin-secret")).status_code == 200
        assert httpx.post(url + "/v2/repository/models/gru/load", headers=bearer("admin-secret")).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "bushu.audit"]
    digest = read_manifest(guarded.app.state.dataplane.repository.get("gru").path).digest()
    assert any("action=unload model=gru" in ln and "by=ops" in ln and digest in ln for ln in lines)
    assert any("action=load model=gru" in ln and "by=ops" in ln and digest in ln for ln in lines)


def test_per_token_rate_limit_answers_429(guarded):
    statuses = [httpx.post(guarded.url + "/v2/models/tiny/infer", json=TINY, headers=bearer("slow-secret"))
                for _ in range(8)]
    codes = [r.status_code for r in statuses]
    assert codes[:3] == [200, 200, 200] and 429 in codes
    limited = next(r for r in statuses if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1 and "rate limit" in limited.json()["error"]
    # another token is not limited by this one's use
    assert httpx.post(guarded.url + "/v2/models/tiny/infer", json=TINY, headers=bearer("infer-secret")).status_code == 200


@pytest.mark.parametrize(("name", "status", "error"), [
    # decoded to a name with "/" in it: no route has such a path, whatever the name check says
    ("..%2F..%2Fetc", 404, "Not Found"),
    ("%2Fetc%2Fpasswd", 404, "Not Found"),
    ("tiny%2F..%2F..", 404, "Not Found"),
    # one path segment: only the repository's name check stands between it and the file system
    ("%2E%2E", 400, "'..' is not a model name"),
    ("..%5C..%5Cetc", 400, "'..\\\\..\\\\etc' is not a model name"),
    (".tiny", 400, "'.tiny' is not a model name"),
    ("~root", 400, "'~root' is not a model name"),
])
def test_path_traversal_on_the_repository_api(guarded, name, status, error):
    """Exact answers: with the name check removed, the one-segment names would be 404 (no such
    folder), so this fails if the check goes."""
    r = httpx.post(guarded.url + f"/v2/repository/models/{name}/load", headers=bearer("admin-secret"))
    assert (r.status_code, r.json()) == (status, {"error": error}), r.text
    names = {m["name"] for m in httpx.post(guarded.url + "/v2/repository/index", headers=bearer("admin-secret")).json()}
    assert names == {"tiny", "heads", "gru"}


def test_symlinks_out_of_the_repository_are_refused(tiny_package, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(tiny_package, repo / "tiny" / "1")
    outside = shutil.copytree(tiny_package, tmp_path / "outside" / "pkg")
    with ThreadServer([repo]) as server:  # the links appear after the start, as an attacker would add them
        (repo / "linked").mkdir()
        (repo / "linked" / "1").symlink_to(outside, target_is_directory=True)
        leaky = shutil.copytree(tiny_package, repo / "leaky" / "1")
        (leaky / "model.onnx").unlink()
        (leaky / "model.onnx").symlink_to(outside / "model.onnx")
        assert httpx.post(server.url + "/v2/repository/models/tiny/load").status_code == 200
        r = httpx.post(server.url + "/v2/repository/models/linked/load")
        assert r.status_code == 404 and "no model 'linked'" in r.json()["error"]
        r = httpx.post(server.url + "/v2/repository/models/leaky/load")
        assert r.status_code == 422 and "outside the package folder" in r.json()["error"]


def test_tls_with_a_self_signed_certificate(tiny_package, tmp_path):
    import ssl

    cert, key = self_signed(tmp_path)
    with ThreadServer([tiny_package], ssl_certfile=str(cert), ssl_keyfile=str(key)) as server:
        assert server.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=context) as client:
            assert client.post(server.url + "/v2/models/tiny/infer", json=TINY).status_code == 200
        with pytest.raises(httpx.ConnectError):  # an unknown certificate is not trusted
            httpx.get(server.url + "/v2/health/live")
        with pytest.raises(httpx.TransportError):  # plain HTTP is not spoken
            httpx.get(server.url.replace("https", "http") + "/v2/health/live")


def test_overload_at_four_times_capacity_is_refused_fast_and_nothing_accepted_is_lost(slow_package):
    """Capacity: one instance plus a queue of 4. Twenty clients in a loop offer four times that."""
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1024], "data": np.ones(1024).tolist()}]}
    settings = ServeSettings(max_batch_size=1, max_queue_size=4, threads=1)

    async def client_loop(client, until, log):
        while time.monotonic() < until:
            start = time.perf_counter()
            r = await client.post("/v2/models/slow/infer", json=body)
            log.append((r.status_code, time.perf_counter() - start))

    async def scenario(url):
        log = []
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=40)) as client:
            until = time.monotonic() + 3
            await asyncio.gather(*(client_loop(client, until, log) for _ in range(20)))
            alive = await client.get("/v2/health/live")
        return log, alive.status_code

    with ThreadServer([slow_package], settings) as server:
        log, alive = asyncio.run(scenario(server.url))
    statuses = [s for s, _ in log]
    assert set(statuses) == {200, 503}, {s: statuses.count(s) for s in set(statuses)}
    refused = sorted(t for s, t in log if s == 503)
    served = sorted(t for s, t in log if s == 200)
    assert refused[len(refused) // 2] < served[len(served) // 2]  # refusals do not wait for the model
    assert alive == 200

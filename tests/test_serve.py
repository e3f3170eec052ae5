"""``ganpipe serve``: the JSON API over the run store, with FastAPI's TestClient and a real
uvicorn process."""

import io
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ganpipe.config import load_config
from ganpipe.errors import ConfigError
from ganpipe.serve.api import create_app
from ganpipe.serve.local import free_port, wait_until_up
from ganpipe.serve.security import check_binding
from ganpipe.stages.generate import generate
from ganpipe.store import RunStore
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tiny_model):
    """A client of the API over the tiny model's store, and a batch generated the CLI way."""
    cfg = load_config(None, tiny_overrides(tiny_model) + ["generate.per_style=2"])
    store = RunStore.from_config(cfg)
    batch = generate(cfg, store)
    return TestClient(create_app(cfg)), cfg, store, batch


def test_the_api_lists_models_their_versions_and_styles(served):
    client, cfg, store, _ = served
    assert client.get("/healthz").json()["status"] == "ok"
    (model,) = client.get("/api/models").json()
    assert model["name"] == "demo" and model["current"] in model["versions"]
    found = client.get(f"/api/models/demo/{model['current']}").json()
    assert found["training"]["steps_done"] > 0 and len(found["styles"]) == 6
    styles = client.get("/api/styles").json()
    assert [s["name"] for s in styles] == [f"style-{i}" for i in range(6)]
    assert client.get("/api/models/demo/v-nope").status_code == 404
    assert client.get("/openapi.json").json()["paths"]["/api/generate"]


def test_one_image_is_byte_identical_to_the_cli_and_several_come_zipped(served, tmp_path):
    client, cfg, store, _ = served
    done = client.post("/api/generate", json={"style": "style-1", "seeds": [3]})
    assert done.status_code == 200 and done.headers["content-type"] == "image/png"
    cli = load_config(None, tiny_overrides(cfg.store.root) + [
        "generate.styles=[style-1]", "generate.seeds=[3]"])  # fmt: skip
    batch = generate(cli, store)
    assert done.content == store.read_bytes(f"batches/{batch.batch_id}/images/style-1/00000003.png")
    several = client.post("/api/generate", json={"styles": ["style-0", "style-2"], "count": 2,
                                                 "format": "webp"})  # fmt: skip
    names = zipfile.ZipFile(io.BytesIO(several.content)).namelist()
    assert several.headers["content-type"] == "application/zip" and len(names) == 4
    assert all(n.endswith(".webp") for n in names)


def test_bad_requests_get_the_clis_explanation(served):
    client, *_ = served
    too_many = client.post("/api/generate", json={"count": 65, "style": "style-0"})
    assert too_many.status_code == 400
    assert too_many.json()["where"] == "count" and "serve.max_count" in too_many.json()["error"]
    for huge in (
        {"count": 10**9},
        {"seeds": list(range(100))},
        {"interpolate": {"styles": ["style-0", "style-1"], "frames": 10**9}},
    ):
        assert client.post("/api/generate", json=huge).status_code == 400, huge  # refused at once
    all_styles = client.post("/api/generate", json={"count": 11})  # 6 styles x 11 = 66 > 64
    assert all_styles.status_code == 400 and "66 images" in all_styles.json()["error"]
    unknown = client.post("/api/generate", json={"style": "watercolour"})
    assert unknown.status_code == 404 and "style-0" in unknown.json()["detail"]
    assert client.post("/api/generate", json={"truncation": 3}).status_code == 422
    assert client.post("/api/generate", json={"model": "demo/../../etc"}).status_code == 404


def test_no_path_parameter_leaves_the_run_store(served):
    client, cfg, store, batch = served
    for url in ("/api/models/..%2F..%2Fetc/passwd", "/api/models/../datasets",
                "/api/batches/..%2Fmodels", "/api/batches/..",
                f"/api/batches/{batch.batch_id}/images/../config.yaml",
                f"/api/batches/{batch.batch_id}/images/..%2F..%2Fdatasets%2Fdemo%2Flatest.json",
                f"/api/batches/{batch.batch_id}/images/%2Fetc%2Fpasswd",
                "/api/styles?model=..%2F..%2Fetc"):  # fmt: skip
        assert client.get(url).status_code == 404, url
    curated = client.post(
        f"/api/batches/{batch.batch_id}/curation",
        json={"items": [{"path": "../../etc/passwd", "verdict": "approved"}]},
    )
    assert curated.status_code == 404


def test_curation_is_stored_beside_the_manifest_and_exported(served):
    client, cfg, store, batch = served
    found = client.get(f"/api/batches/{batch.batch_id}").json()
    paths = [row["path"] for row in found["images"]]
    verdicts = [{"path": p, "verdict": v}
                for p, v in zip(paths, ["approved", "approved", "rejected"])]  # fmt: skip
    saved = client.post(f"/api/batches/{batch.batch_id}/curation",
                        json={"items": verdicts, "who": "ada"})  # fmt: skip
    assert saved.json()["totals"] == {"approved": 2, "rejected": 1}
    manifest_before = store.read_bytes(f"batches/{batch.batch_id}/manifest.parquet")
    rows = {r["path"]: r for r in client.get(f"/api/batches/{batch.batch_id}").json()["images"]}
    assert rows[paths[0]]["curation"] == "approved" and rows[paths[0]]["curated_by"] == "ada"
    assert rows[paths[3]]["curation"] is None
    assert sum(client.get(f"/api/batches/{batch.batch_id}").json()[
        "approved_per_style"].values()) == 2  # fmt: skip
    image = client.get(rows[paths[0]]["url"])
    assert image.status_code == 200 and image.content == store.read_bytes(
        f"batches/{batch.batch_id}/{paths[0]}")  # fmt: skip
    exported = client.get(f"/api/batches/{batch.batch_id}/export?set=approved")
    archive = zipfile.ZipFile(io.BytesIO(exported.content))
    assert sorted(archive.namelist()) == sorted(paths[:2])
    assert archive.read(paths[0]) == store.read_bytes(f"batches/{batch.batch_id}/{paths[0]}")
    undo = client.post(f"/api/batches/{batch.batch_id}/curation",
                       json={"items": [{"path": paths[1], "verdict": None}]})  # fmt: skip
    assert undo.json()["totals"] == {"approved": 1, "rejected": 1}
    assert store.read_bytes(f"batches/{batch.batch_id}/manifest.parquet") == manifest_before
    assert store.exists(f"batches/{batch.batch_id}/curation.parquet")


def test_a_token_guards_every_api_route(served):
    _, cfg, *_ = served
    client = TestClient(create_app(cfg, token="s3cret-token"))
    assert client.get("/healthz").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
        assert client.get("/api/models", headers=headers).status_code == 401, headers
        assert client.post("/api/generate", json={}, headers=headers).status_code == 401
    ok = client.get("/api/models", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200


def test_binding_beyond_loopback_needs_a_token_given_by_reference():
    check_binding("127.0.0.1", None)
    check_binding("::1", None)
    check_binding("0.0.0.0", "x")
    with pytest.raises(ConfigError, match="without a token") as caught:
        check_binding("0.0.0.0", None)
    assert caught.value.where == "serve.token"
    with pytest.raises(ConfigError, match="ENV_VAR"):
        load_config(None, ["serve.token=plain-secret"])


def test_a_real_server_process(tiny_model):
    port = free_port()
    sets = [a for kv in tiny_overrides(tiny_model) + ["serve.token=${GANPIPE_TEST_TOKEN}"]
            for a in ("--set", kv)]  # fmt: skip
    env = {**os.environ, "GANPIPE_TEST_TOKEN": "t0ken-" + "x" * 20}
    refused = subprocess.run([sys.executable, "-m", "ganpipe", "serve", *sets[:-2],
                              "--host", "0.0.0.0", "--port", str(port)],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 1 and "without a token" in refused.stderr
    proc = subprocess.Popen([sys.executable, "-m", "ganpipe", "serve", *sets, "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base)
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"{base}/api/models", timeout=5)
        assert denied.value.code == 401
        ask = urllib.request.Request(f"{base}/api/generate", method="POST",
                                     data=b'{"style": "style-2", "seeds": [5]}', headers={
                                         "Authorization": f"Bearer {env['GANPIPE_TEST_TOKEN']}",
                                         "Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(ask, timeout=60) as answer:
            assert answer.headers["content-type"] == "image/png"
            assert answer.read()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    printed = proc.stdout.read().decode() + proc.stderr.read().decode()
    assert env["GANPIPE_TEST_TOKEN"] not in printed  # the secret is never printed


def test_render_by_query_blends_two_styles(served):
    client, *_ = served
    plain = client.get("/api/render?style=style-0&seed=4")
    assert plain.headers["content-type"] == "image/png"
    posted = client.post("/api/generate", json={"style": "style-0", "seeds": [4]})
    assert plain.content == posted.content
    other = client.get("/api/render?style=style-3&seed=4").content
    blend = "/api/render?style=style-0&seed=4&blend=style-3&t="
    assert client.get(blend + "0").content == plain.content
    assert client.get(blend + "1").content == other
    assert client.get(blend + "0.5").content not in (plain.content, other)
    assert client.get(blend + "2").status_code == 400
    assert client.get("/api/render?style=nope").status_code == 404


def test_reference_uploads_are_bounded_and_decoded_safely(served, tmp_path):
    from PIL import Image

    from ganpipe.data import demo

    client, cfg, *_ = served
    picture = io.BytesIO()
    demo.render("rings", 3, size=32).save(picture, format="PNG")
    done = client.post("/api/generate/reference?count=2&seed=1", content=picture.getvalue())
    assert done.status_code == 200
    assert len(zipfile.ZipFile(io.BytesIO(done.content)).namelist()) == 2
    small = TestClient(create_app(cfg.model_copy(update={"serve": cfg.serve.model_copy(
        update={"max_upload_mb": 0.001})})))  # fmt: skip
    too_big = small.post("/api/generate/reference", content=b"\0" * 5000)
    assert too_big.status_code == 413 and "serve.max_upload_mb" in too_big.json()["detail"]
    bomb = io.BytesIO()
    Image.new("1", (12000, 12000)).save(bomb, format="PNG")  # 144 Mpx in a few kB
    refused = client.post("/api/generate/reference", content=bomb.getvalue())
    assert refused.status_code == 400 and "too_large" in refused.json()["error"]
    assert client.post("/api/generate/reference?count=0",
                       content=picture.getvalue()).status_code == 422  # fmt: skip
    junk = client.post("/api/generate/reference", content=b"not an image at all")
    assert junk.status_code == 400 and junk.json()["where"] == "generate.reference"


def test_concurrent_callers_share_render_passes_and_get_their_own_bytes(served):
    """Eight callers at once: fewer generator passes than callers, and every caller's image
    byte-identical to the one it gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    client, cfg, *_ = served
    app = create_app(cfg)
    alone = {s: TestClient(app).post("/api/generate", json={"style": "style-1", "seeds": [s]})
             .content for s in range(8)}  # fmt: skip
    app.state.renders.window = 0.5  # a generous window, so the eight surely meet
    before = app.state.renders.passes

    def call(seed):
        answer = TestClient(app).post("/api/generate", json={"style": "style-1", "seeds": [seed]})
        return seed, answer.content

    with ThreadPoolExecutor(8) as pool:
        together = dict(pool.map(call, range(8)))
    assert together == alone
    assert app.state.renders.passes - before < 8


def test_interpolation_frames_and_exemplar_links(served):
    client, *_ = served
    frames = client.post(
        "/api/generate",
        json={"interpolate": {"styles": ["style-0", "style-4"], "seeds": [1, 1], "frames": 4}},
    )
    names = zipfile.ZipFile(io.BytesIO(frames.content)).namelist()
    assert names == [f"images/frames/{i:04d}.png" for i in range(4)]
    (first,) = [s for s in client.get("/api/styles").json() if s["name"] == "style-0"]
    assert client.get(first["exemplars_url"]).content[:4] == b"\x89PNG"


def test_a_model_uri_can_be_the_served_default(served, tmp_path):
    import shutil

    from ganpipe.domain.model_pointers import champion

    client, cfg, store, _ = served
    copy = tmp_path / "exported-model"
    shutil.copytree(Path(cfg.store.root) / champion(cfg, store).folder, copy)
    pinned = TestClient(create_app(cfg, default_model=str(copy)))
    assert pinned.get("/api/styles").json() == client.get("/api/styles").json()
    same = {"style": "style-2", "seeds": [9]}
    assert pinned.post("/api/generate", json=same).content == client.post(
        "/api/generate", json=same).content  # fmt: skip
    with pytest.raises(ConfigError, match="no exported generator"):
        create_app(cfg, default_model=str(tmp_path))

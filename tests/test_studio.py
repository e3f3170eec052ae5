"""The web studio: pages over the API, a login when a token guards the server, and a real
headless Chromium driving it as a person would (tests/browser.py's Session)."""

import io
import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from ganpipe.config import load_config
from ganpipe.serve.api import create_app
from ganpipe.serve.local import free_port, wait_until_up
from ganpipe.stages.generate import generate
from ganpipe.store import RunStore
from tests.browser import Session, chromium_binary
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "images"


@pytest.fixture(scope="module")
def studio(tiny_model):
    cfg = load_config(None, tiny_overrides(tiny_model) + ["generate.per_style=3"])
    store = RunStore.from_config(cfg)
    batch = generate(cfg, store)
    return cfg, store, batch


def test_pages_render_for_people(studio):
    cfg, store, batch = studio
    client = TestClient(create_app(cfg))
    styles = client.get("/studio").text
    assert styles.count('alt="exemplars of style-') == 6 and "seed 5" in styles
    assert client.get("/api/styles/style-0/exemplars.png").content[:4] == b"\x89PNG"
    assert client.get("/api/styles/..%2F..%2Fetc/exemplars.png").status_code == 404
    assert 'id="blend"' in client.get("/studio/generate").text
    assert batch.batch_id in client.get("/studio/batches").text
    page = client.get(f"/studio/batches/{batch.batch_id}").text
    assert page.count("<tr data-path=") == 18 and 'loading="lazy"' in page


def test_a_batch_of_thousands_is_paged(studio):
    """5,000 candidates: each page shows 100 (thumbnails lazy), filters and sorts apply."""
    cfg, store, batch = studio
    big = store.read_parquet(f"batches/{batch.batch_id}/manifest.parquet")
    rows = big.sample(5000, replace=True, random_state=0).reset_index(drop=True)
    rows["path"] = [f"images/style-0/{i:08d}.png" for i in range(5000)]
    rows["kept"] = [i % 3 != 0 for i in range(5000)]
    store.write_parquet("batches/b-many/manifest.parquet", rows)
    client = TestClient(create_app(cfg))
    first = client.get("/studio/batches/b-many").text
    assert first.count("<tr data-path=") == 100 and "page 1 of 50" in first
    last = client.get("/studio/batches/b-many?page_no=49&show=kept").text
    assert "page 34 of 34" in last and "<tr data-path=" in last


def test_a_token_guards_the_studio_with_a_login(studio):
    cfg, *_ = studio
    client = TestClient(create_app(cfg, token="studio-token"), follow_redirects=False)
    assert client.get("/studio").status_code == 303
    assert client.post("/studio/session", json={"token": "nope"}).status_code == 401
    assert client.get("/api/styles/style-0/exemplars.png").status_code == 401
    assert client.post("/studio/session", json={"token": "studio-token"}).status_code == 204
    assert client.get("/studio").status_code == 200  # the session cookie now
    assert client.get("/api/models").status_code == 200


@pytest.mark.browser
@pytest.mark.skipif(chromium_binary() is None, reason="needs chromium (apt-get install chromium)")
def test_a_person_generates_curates_with_the_keyboard_and_downloads(studio):
    cfg, store, batch = studio
    port = free_port()
    sets = [a for kv in tiny_overrides(cfg.store.root) for a in ("--set", kv)]
    command = [sys.executable, "-m", "ganpipe", "serve", *sets, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ})  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with Session() as page:
            page.open(f"{base}/studio")
            page.wait_for(page.images_loaded())
            (SCREENSHOTS / "studio-styles.png").write_bytes(page.screenshot())

            page.open(f"{base}/studio/generate")
            page.wait_for("document.getElementById('status').textContent === 'done'")
            first = page.evaluate("document.getElementById('result').src")
            page.evaluate("(() => { const s = document.getElementById('seed'); s.value = 7;"
                          " s.dispatchEvent(new Event('input')); })()")  # fmt: skip
            page.wait_for("document.getElementById('status').textContent === 'done'")
            assert page.evaluate("document.getElementById('result').naturalWidth") == 16
            assert page.evaluate("document.getElementById('result').src") != first
            (SCREENSHOTS / "studio-generate.png").write_bytes(page.screenshot())

            page.open(f"{base}/studio/batches/{batch.batch_id}")
            page.wait_for(page.images_loaded())
            for done, key in enumerate(("a", "a", "r", "a"), start=1):  # approve, reject...
                page.press(key)
                page.wait_for(
                    f"document.querySelectorAll('tr.approved, tr.rejected').length === {done}"
                )  # each verdict saved before the next key
            page.wait_for("document.querySelectorAll('tr.approved').length === 3")
            page.wait_for("document.getElementById('approved').textContent.trim().length > 0")
            (SCREENSHOTS / "studio-batch.png").write_bytes(page.screenshot())
            href = page.evaluate("document.getElementById('download').href")
            assert page.errors == [], page.errors
        with urllib.request.urlopen(href, timeout=30) as answer:
            archive = zipfile.ZipFile(io.BytesIO(answer.read()))
        curation = pd.read_parquet(Path(cfg.store.root) / "batches" / batch.batch_id /
                                   "curation.parquet")  # fmt: skip
        approved = sorted(curation[curation["curation"] == "approved"]["path"])
        assert len(approved) == 3 and sorted(archive.namelist()) == approved
        assert (curation["curation"] == "rejected").sum() == 1
    finally:
        server.terminate()
        server.wait(timeout=30)

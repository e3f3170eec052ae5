"""Bad inputs: a corpus of broken files in every image format ganpipe reads, then fuzzed bytes
(hypothesis) into the decoder and through a whole ingest. Nothing crashes, every input ends
accepted or rejected with a known reason, and the counts balance.

Each test keeps its own tally of what it fed and what came back, and checks and prints it, so
every test means the same run alone or in any order."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ganpipe.data.decode import Decoded, DecodeSettings, Rejected, decode_image
from tests.test_ingest import run_ingest

# PIL warns about the corrupt metadata the fuzzers make; what matters is the outcome.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

REASONS = {"empty", "not_image", "corrupt", "truncated", "too_small", "too_large", "duplicate",
           "unreadable", "outside_root"}  # fmt: skip
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "ICO", "PPM", "TGA"]
SETTINGS = DecodeSettings(image_size=16, min_size=8, max_pixels=1_000_000)


def encoded(fmt: str, size=(24, 20), mode="RGB", seed=0, **save) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buf, fmt, **save)
    return buf.getvalue()


SEEDS = [encoded(f, seed=i) for i, f in enumerate(FORMATS)] + [
    encoded("PNG", mode="RGBA", seed=20), encoded("PNG", mode="P", seed=21),
    encoded("JPEG", mode="CMYK", seed=22), encoded("TIFF", mode="I;16", seed=23),
    encoded("PNG", mode="LA", seed=24), encoded("JPEG", seed=25, progressive=True),
]  # fmt: skip


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its (tiny) data does not have: a bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data)))  # fmt: skip
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def check(result, tally: Counter[str]) -> None:
    """One outcome, of a known kind, whatever the bytes."""
    assert isinstance(result, (Decoded, Rejected)), type(result)
    if isinstance(result, Decoded):
        assert result.pixels.shape == (16, 16, 3) and result.pixels.dtype == np.uint8
        assert result.width * result.height <= SETTINGS.max_pixels
        tally["accepted"] += 1
    else:
        assert result.reason in REASONS and result.detail, result
        tally[f"rejected:{result.reason}"] += 1


def decode_timed(data: bytes, tally: Counter[str]):
    tally["fed"] += 1
    start = time.perf_counter()
    result = decode_image(data, SETTINGS)
    assert time.perf_counter() - start < 5, f"decoding {len(data)} bytes took over 5 s"
    check(result, tally)
    return result


def figures(capsys, name: str, tally: Counter[str]) -> None:
    """The test's own figures, for the README."""
    with capsys.disabled():
        print(f"\nfuzzing figures ({name}): {dict(sorted(tally.items()))}")


def assert_balanced(tally: Counter[str], capsys, name: str) -> None:
    """Every input this test fed to the decoder came back as exactly one outcome."""
    outcomes = sum(v for k, v in tally.items() if k == "accepted" or k.startswith("rejected:"))
    assert tally["fed"] > 0 and outcomes == tally["fed"], dict(tally)
    figures(capsys, name, tally)


# The corpus --------------------------------------------------------------------------------


@pytest.fixture
def broken_corpus(tmp_path):
    """Every format valid, truncated, scribbled over, mislabelled; plus the issue-3 cases."""
    root = tmp_path / "corpus"
    expected: dict[str, set[str]] = {}

    def put(name: str, data: bytes, *reasons: str) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        expected[name] = set(reasons)

    for i, fmt in enumerate(FORMATS):
        ext = fmt.lower()
        good = encoded(fmt, seed=100 + i)
        put(f"ok/{ext}.{ext}", good, "accepted")
        put(f"cut/{ext}-half.{ext}", good[: len(good) // 2], "truncated", "corrupt", "not_image")
        put(f"cut/{ext}-header.{ext}", good[:16], "truncated", "corrupt", "not_image")
        scribbled = bytearray(good)
        scribbled[len(good) // 3 : len(good) // 3 + 24] = b"\xff" * 24
        put(f"scribbled/{ext}.{ext}", bytes(scribbled), "accepted", "corrupt", "truncated",
            "not_image")  # fmt: skip
        put(f"mislabelled/{ext}.png", encoded(fmt, seed=200 + i), "accepted")
    put("special/empty.png", b"", "empty")
    put("special/text.jpg", b"just some notes, not a picture\n" * 4, "not_image")
    put("special/html.png", b"<html><body>403 Forbidden</body></html>", "not_image")
    put("special/zeros.png", b"\x00" * 4096, "not_image")
    put("special/png-magic-only.png", b"\x89PNG\r\n\x1a\n", "truncated", "corrupt", "not_image")
    put("special/bomb-header.png", png_claiming(60_000, 60_000), "too_large")
    put("special/wide-bomb.png", png_claiming(1_000_000, 2), "too_large")
    put("special/tiny.png", encoded("PNG", size=(4, 4)), "too_small")
    put("special/one-pixel-tall.png", encoded("PNG", size=(300, 1)), "too_small")
    put("special/duplicate.png", (root / "ok" / "png.png").read_bytes(), "duplicate")
    put("special/sixteen-bit.tiff", encoded("TIFF", mode="I;16", seed=5), "accepted")
    put("special/cmyk.jpg", encoded("JPEG", mode="CMYK", seed=6), "accepted")
    put("special/exif-garbage.jpg", encoded("JPEG", seed=7, exif=b"Exif\x00\x00" + os.urandom(64)),
        "accepted", "corrupt")  # fmt: skip
    os.symlink(root / "nowhere.png", root / "special" / "dangling.png")
    expected["special/dangling.png"] = {"unreadable"}
    os.symlink(root / "special" / "loop-b.png", root / "special" / "loop-a.png")
    os.symlink(root / "special" / "loop-a.png", root / "special" / "loop-b.png")
    expected["special/loop-a.png"] = expected["special/loop-b.png"] = {"unreadable"}
    return root, expected


def test_every_broken_file_is_accounted_for_with_its_reason(tmp_path, broken_corpus, capsys):
    root, expected = broken_corpus
    result, manifest, rejects, *_ = run_ingest(tmp_path, root, "dataset.labels=none",
                                               "dataset.max_pixels=1000000")  # fmt: skip
    outcome = {os.path.relpath(s, root): "accepted" for s in manifest["source"]}
    outcome |= {os.path.relpath(s, root): r for s, r in zip(rejects["source"], rejects["reason"])}
    assert result.counts["inputs"] == len(expected) == len(manifest) + len(rejects)
    assert set(outcome) == set(expected)  # each input exactly once, none lost, none invented
    wrong = {name: got for name, got in outcome.items() if got not in expected[name]}
    assert wrong == {}
    assert rejects["detail"].str.len().min() > 5
    figures(capsys, "corpus", Counter(corpus=len(expected), **Counter(outcome.values())))


# Fuzzing ------------------------------------------------------------------------------------


@st.composite
def mutated_image(draw) -> bytes:
    """A valid image of some format and mode, then flipped bits, overwritten or inserted runs,
    a cut, or a header field set to an extreme."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "overwrite", "insert", "truncate", "header"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            run = draw(st.binary(min_size=1, max_size=32))
            data[at : at + len(run)] = run
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "truncate":
            del data[at:]
        else:  # a width/height-like field near the start set to 0, 1 or huge
            value = draw(st.sampled_from([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            at = draw(st.integers(0, min(32, max(0, len(data) - 4))))
            data[at : at + 4] = struct.pack(">I", value)
    return bytes(data)


def test_random_bytes_never_crash_the_decoder(capsys):
    tally: Counter[str] = Counter()

    @settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=4096))
    def feed(data):
        decode_timed(data, tally)

    feed()
    assert_balanced(tally, capsys, "random bytes")


def test_mutated_images_never_crash_the_decoder(capsys):
    tally: Counter[str] = Counter()

    @settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated_image())
    def feed(data):
        decode_timed(data, tally)

    feed()
    assert_balanced(tally, capsys, "mutated images")


def test_fuzzed_folders_ingest_with_every_input_accounted_for(tmp_path_factory, capsys):
    tally: Counter[str] = Counter()

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.one_of(mutated_image(), st.binary(max_size=512)), min_size=10,
                    max_size=30))  # fmt: skip
    def feed(files):
        root = tmp_path_factory.mktemp("fuzzed")
        folder = root / "in"
        folder.mkdir()
        for i, data in enumerate(files):
            (folder / f"{i:03d}.{FORMATS[i % len(FORMATS)].lower()}").write_bytes(data)
        good = folder / "zz-good.png"
        good.write_bytes(encoded("PNG", seed=999))  # one usable image, so the version exists
        result, manifest, rejects, *_ = run_ingest(root, folder, "dataset.labels=none",
                                                   "dataset.max_pixels=1000000")  # fmt: skip
        names = sorted(pd.concat([manifest["source"], rejects["source"]]).map(os.path.basename))
        assert names == sorted(p.name for p in folder.iterdir())
        assert result.counts["inputs"] == len(files) + 1 == len(manifest) + len(rejects)
        assert set(rejects["reason"]) <= REASONS
        tally["ingested"] += len(files) + 1
        tally["accepted"] += len(manifest)
        tally["rejected"] += len(rejects)

    feed()
    assert tally["ingested"] > 0 and tally["accepted"] + tally["rejected"] == tally["ingested"]
    figures(capsys, "ingested folders", tally)

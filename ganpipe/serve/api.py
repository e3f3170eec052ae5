"""The JSON API of ``ganpipe serve``: models, styles, on-demand generation, batches and curation.

Everything is read from the run store through ``ganpipe.store.layout`` and the stages' own
functions, so a request gives exactly what the command line would: ``POST /api/generate`` plans
the same batch as ``ganpipe generate`` with the same settings and encodes its images with the
same encoder, so the bytes are identical. Path parameters are names, never paths: each must be
a plain name (``security.safe_name``), and an image is served only if the batch's manifest lists
it, so no URL reaches outside the run store.

Human verdicts live in ``curation.parquet`` beside a batch's manifest, written atomically and
merged when read, so the filter's own verdicts are never overwritten.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import Any, Literal

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ganpipe.config import Config, validate_config
from ganpipe.domain.model_pointers import ModelRef, champion
from ganpipe.errors import ConfigError, GanpipeError
from ganpipe.serve.render_queue import RenderQueue
from ganpipe.serve.rendering import render_one, render_request
from ganpipe.serve.security import safe_name, signed_in, token_matches
from ganpipe.serve.store_views import CURATION, batch_manifest, read_curation, style_rows
from ganpipe.store import RunStore, layout

MEDIA = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}


class GenerateBody(BaseModel):
    """The ``generate`` section's fields a caller may set, per request."""

    style: str | None = None  # one style by name or id
    styles: list[str] = Field(default_factory=list)  # or several; neither: every style
    count: int = Field(1, ge=1)  # images per style
    seed: int = Field(0, ge=0)
    seeds: list[int] | None = None
    truncation: float = Field(1.0, ge=0.0, le=1.0)
    format: Literal["png", "webp", "jpeg"] = "png"
    model: str | None = None  # "name/version"; default: the current model
    # frames between two styles and/or seeds, as generate.interpolate: {styles, seeds, frames}
    interpolate: dict[str, Any] | None = None


class CurationItem(BaseModel):
    path: str
    verdict: Literal["approved", "rejected"] | None


class CurationBody(BaseModel):
    items: list[CurationItem]
    who: str = Field("anonymous", max_length=120)


def create_app(config: Config, token: str | None = None, render_threads: int | None = None,
               default_model: str | None = None) -> FastAPI:  # fmt: skip
    """The API over the run store ``config`` names; with ``token``, every ``/api`` route needs
    ``Authorization: Bearer <token>``. ``render_threads`` sets torch's threads for rendering,
    process-wide (leave it None when the process does other work)."""
    store = RunStore.from_config(config)
    renders = RenderQueue(threads=render_threads)
    app = FastAPI(title="ganpipe", summary="Style-diverse image generation: API and studio")

    def authorised(request: Request) -> None:
        """The bearer token, or the studio's session cookie (set by signing in with it)."""

        if token and not (token_matches(request.headers.get("authorization"), token)
                          or signed_in(request, token)):  # fmt: skip
            raise HTTPException(401, "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    api = [Depends(authorised)]

    @app.exception_handler(ConfigError)
    async def _bad_request(request: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse(status_code=400, content=_error(exc))

    @app.exception_handler(GanpipeError)
    async def _store_problem(request: Request, exc: GanpipeError) -> JSONResponse:
        return JSONResponse(status_code=500, content=_error(exc))

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "store": store.uri()}

    model_of = partial(_model, store, config, default=_default_model(config, default_model))
    _model_routes(app, store, model_of, api)
    _generation_routes(app, store, config, api, renders, model_of)
    app.state.renders = renders
    _batch_routes(app, store, api)
    from ganpipe.serve.studio import add_studio

    add_studio(app, store, token, api, model_of)
    return app


def _model_routes(app: FastAPI, store: RunStore, model_of: Callable, api: list) -> None:
    @app.get("/api/models", dependencies=api)
    def models() -> list[dict]:
        out = []
        for name in store.listdir("models") if store.exists("models") else []:
            current = layout.model_current(name)
            versions = [v for v in store.listdir(layout.model_root(name)) if v.startswith("v-")]
            out.append({"name": name, "versions": versions,
                        "current": store.read_text(current).strip()
                        if store.exists(current) else None})  # fmt: skip
        return out

    @app.get("/api/models/{name}/{version}", dependencies=api)
    def model(name: str, version: str) -> dict:
        ref = model_of(f"{name}/{version}")
        files = ref.files
        found: dict[str, Any] = {"name": name, "version": version}
        for key, rel in (("training", files.training), ("evaluation", files.evaluation),
                         ("retrain", files.retrain)):  # fmt: skip
            found[key] = store.read_json(rel) if store.exists(rel) else None
        meta = store.read_json(files.network("generator", "json"))
        found["styles"] = style_rows(meta)
        return found

    @app.get("/api/styles", dependencies=api)
    def styles(model: str | None = None) -> list[dict]:
        ref = model_of(model)
        found = style_rows(ref.store.read_json(ref.files.network("generator", "json")))
        suffix = f"?model={model}" if model else ""
        for row in found:
            row["exemplars_url"] = f"/api/styles/{row['name']}/exemplars.png{suffix}"
        return found


def _generation_routes(app: FastAPI, store: RunStore, config: Config, api: list,
                       renders: RenderQueue, model_of: Callable) -> None:  # fmt: skip
    @app.post("/api/generate", dependencies=api)
    def generate(body: GenerateBody) -> Response:
        cfg = _request_config(config, body)
        ref = model_of(body.model)
        _known_styles(ref.store.read_json(ref.files.network("generator", "json")),
                      [body.style] if body.style else body.styles)  # fmt: skip
        names, images = render_request(cfg, store, ref, renders)
        if len(images) == 1:
            return Response(images[0], media_type=MEDIA[body.format])
        return _zip_response(zip(names, images), "images.zip")

    @app.get("/api/render", dependencies=api)
    def render(style: str, seed: int = 0, truncation: float = 1.0, blend: str | None = None,
               t: float = 0.0, model: str | None = None) -> Response:  # fmt: skip
        """One PNG by query, for pages: ``blend`` and ``t`` mix a second style in (0 = only
        ``style``, 1 = only ``blend``), the interpolation ``ganpipe generate`` does."""
        ref = model_of(model)
        _known_styles(ref.store.read_json(ref.files.network("generator", "json")),
                      [style] + ([blend] if blend else []))  # fmt: skip
        if not 0 <= t <= 1 or not 0 <= truncation <= 1:
            raise ConfigError("t and truncation must be between 0 and 1", where="query",
                              fix="give values from 0 to 1")  # fmt: skip
        body = GenerateBody(style=style, seeds=[seed], truncation=truncation)
        cfg = _request_config(config, body)
        if blend is not None and blend != style:
            frames = {"styles": [style, blend], "seeds": [seed, seed], "frames": 2}
            cfg = validate_config(_merged(cfg, {"interpolate": frames}), "the request")
        return Response(render_one(cfg, store, ref, t, renders), media_type="image/png")

    @app.post("/api/generate/reference", dependencies=api)
    async def from_reference(request: Request, count: int = Query(1, ge=1),
                             seed: int = Query(0, ge=0)) -> Response:  # fmt: skip
        """Images in the style of an uploaded image (the request body, any image format the
        ingest stage reads), decoded with ingest's safety checks; larger than
        ``serve.max_upload_mb`` is a 413. The body is read here; decoding and rendering run
        on a worker thread, so the server keeps answering meanwhile."""
        data = await _bounded_body(request, int(config.serve.max_upload_mb * 2**20))
        body = GenerateBody(count=count, seed=seed)
        names, images = await run_in_threadpool(_from_reference, config, store, model_of(None),
                                                body, data)  # fmt: skip
        if len(images) == 1:
            return Response(images[0], media_type="image/png")
        return _zip_response(zip(names, images), "images.zip")


def _from_reference(config: Config, store: RunStore, model: ModelRef, body: GenerateBody,
                    data: bytes) -> tuple[list[str], list]:  # fmt: skip
    """``ganpipe generate --reference`` on uploaded bytes (held in a private temporary file)."""
    with tempfile.TemporaryDirectory(prefix="ganpipe-upload-") as folder:
        path = os.path.join(folder, "reference")
        with open(path, "wb") as fh:
            fh.write(data)
        cfg = validate_config(_merged(_request_config(config, body), {"reference": [path]}),
                              "the request")  # fmt: skip
        return render_request(cfg, store, model)


def _batch_routes(app: FastAPI, store: RunStore, api: list) -> None:
    @app.get("/api/batches", dependencies=api)
    def batches() -> list[dict]:
        out = []
        for batch_id in store.listdir("batches") if store.exists("batches") else []:
            files = layout.BatchFiles(layout.batch_dir(batch_id))
            if store.exists(files.manifest):
                request = store.read_json(files.request) if store.exists(files.request) else {}
                out.append({"id": batch_id, "model": request.get("model"),
                            "url": f"/api/batches/{batch_id}"})  # fmt: skip
        return out

    @app.get("/api/batches/{batch_id}", dependencies=api)
    def batch(batch_id: str) -> dict:
        frame = batch_manifest(store, batch_id)
        rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
        for row in rows:
            row["url"] = f"/api/batches/{batch_id}/images/{row['path']}"
        approved = frame[frame["curation"] == "approved"].groupby("style").size()
        return {"id": batch_id, "images": rows,
                "approved_per_style": {str(k): int(v) for k, v in approved.items()}}  # fmt: skip

    @app.get("/api/batches/{batch_id}/images/{path:path}", dependencies=api)
    def image(batch_id: str, path: str) -> Response:
        frame = batch_manifest(store, batch_id)
        if path not in set(frame["path"]):
            raise HTTPException(404, f"batch {batch_id} has no image {path!r}")
        data = store.read_bytes(f"{layout.batch_dir(batch_id)}/{path}")
        return Response(data, media_type=MEDIA.get(path.rsplit(".", 1)[-1], "image/png"))

    @app.post("/api/batches/{batch_id}/curation", dependencies=api)
    def curate(batch_id: str, body: CurationBody) -> dict:
        frame = batch_manifest(store, batch_id)
        known = set(frame["path"])
        unknown = [i.path for i in body.items if i.path not in known]
        if unknown:
            raise HTTPException(404, f"batch {batch_id} has no images {unknown[:3]}")
        rel = f"{layout.batch_dir(batch_id)}/{CURATION}"
        saved = read_curation(store, rel)
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for item in body.items:
            saved[item.path] = {"path": item.path, "curation": item.verdict, "who": body.who,
                                "when": when}  # fmt: skip
        columns = ["path", "curation", "who", "when"]
        store.write_parquet(rel, pd.DataFrame(list(saved.values()), columns=columns))
        counts = pd.Series([v["curation"] for v in saved.values()]).value_counts()
        return {"saved": len(body.items), "totals": {str(k): int(v) for k, v in counts.items()}}

    @app.get("/api/batches/{batch_id}/export", dependencies=api)
    def export(batch_id: str, set: Literal["approved", "kept"] = "approved") -> Response:  # noqa: A002
        frame = batch_manifest(store, batch_id)
        chosen = frame[frame["curation"] == "approved"] if set == "approved" else (
            frame[frame["kept"].fillna(False).astype(bool)] if "kept" in frame else frame
        )  # fmt: skip
        folder = layout.batch_dir(batch_id)
        files = ((p, store.read_bytes(f"{folder}/{p}")) for p in chosen["path"])
        return _zip_response(files, f"{batch_id}-{set}.zip")


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (whatever the
    Content-Length header claimed)."""
    too_large = HTTPException(413, f"the upload is larger than {limit} bytes (serve.max_upload_mb)")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _merged(config: Config, generate: dict) -> dict:
    data = config.model_dump(mode="json")
    data["generate"].update(generate)
    return data


def _request_config(config: Config, body: GenerateBody) -> Config:
    """The config ``ganpipe generate`` would run for this request. Counts are checked against
    ``serve.max_count`` before anything is planned, so no request can make the server build a
    plan of millions of images only to refuse it."""
    cap = config.serve.max_count
    frames = int((body.interpolate or {}).get("frames", 0) or 0)
    if max(body.count, len(body.seeds or []), frames) > cap:
        raise ConfigError(
            f"the request asks for more than serve.max_count ({cap}) images",
            where="count",
            fix="ask for fewer images per request, or run 'ganpipe generate' for a batch",
        )
    data = config.model_dump(mode="json")
    styles = [body.style] if body.style else list(body.styles)
    data["generate"].update(styles=styles, per_style=body.count, counts={}, seed=body.seed,
                            seeds=body.seeds, truncation=body.truncation, format=body.format,
                            reference=[], interpolate=body.interpolate, mixing=None)  # fmt: skip
    return validate_config(data, "the request")


def _default_model(config: Config, uri: str | None) -> ModelRef | None:
    """``ganpipe serve --model URI``: a model version folder served when a request names none
    (``current`` or nothing: the current model, looked up at each request)."""
    if uri in (None, "current"):
        return None
    model = ModelRef(RunStore(uri, config.store.storage_options), "")
    if not model.store.exists(model.files.network("generator", "json")):
        fix = "give current, or the URI of a trained model version folder"
        raise ConfigError(f"--model {uri} holds no exported generator", where="--model", fix=fix)
    return model


def _model(store: RunStore, config: Config, spec: str | None,
           default: ModelRef | None = None) -> ModelRef:  # fmt: skip
    """``name/version``, or the served default (``--model``), or the current model of
    ``config``; unknown ones are a 404."""
    if spec is None and default is not None:
        return default
    if spec is None:
        found = champion(config, store)
        if found is None:
            raise HTTPException(404, f"model {config.model_name!r} has no current version")
        return found
    parts = spec.split("/")
    if len(parts) != 2 or not all(safe_name(p) for p in parts):
        raise HTTPException(404, f"no model {spec!r}: give name/version")
    folder = layout.model_dir(*parts)
    if not store.exists(layout.ModelFiles(folder).network("generator", "json")):
        raise HTTPException(404, f"no model {spec!r} in the run store")
    return ModelRef(store, folder)


def _known_styles(meta: dict, asked: list[str]) -> None:
    """An unknown (or vanished) style is a 404, with the same explanation as the CLI's."""
    from ganpipe.domain.style_table import StyleTable

    table = StyleTable.from_json(meta["styles"])
    for name in asked:
        try:
            table.index(name)
        except ConfigError as exc:
            raise HTTPException(404, exc.message) from None


def _zip_response(files, filename: str) -> Response:
    disposition = {"Content-Disposition": f"attachment; filename={filename}"}
    return Response(_zip(files), media_type="application/zip", headers=disposition)


def _zip(files) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()


def _error(exc: GanpipeError) -> dict:
    return {"error": exc.what, "where": exc.where, "fix": exc.fix, "message": exc.message}

"""The web studio: server-rendered pages over the same API, for people.

Three pages and no build step: models and their styles (real exemplars beside generated
samples), a generate page (style, seed, truncation, a blend of two styles, a reference image),
and a batch page where every candidate shows its filter scores and reject reason, sortable and
filterable, paged (``PAGE`` rows, thumbnails loaded lazily) so a batch of thousands stays
fast, with keyboard curation (j/k, a, r, u) and the approved set as a zip.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import jinja2
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ganpipe.domain.model_pointers import ModelRef
from ganpipe.serve.security import TOKEN_COOKIE, safe_name, signed_in, token_matches
from ganpipe.serve.store_views import batch_manifest, style_rows
from ganpipe.store import RunStore, layout

PAGE = 100  # candidates per batch page
SEEDS = range(6)  # generated samples shown beside each style's exemplars


def add_studio(app: FastAPI, store: RunStore, token: str | None, api: list,
               model_of: Callable) -> None:  # fmt: skip
    env = jinja2.Environment(loader=jinja2.PackageLoader("ganpipe", "templates"),
                             autoescape=True)  # fmt: skip
    _pages(app, env, store, token, model_of)
    _exemplars_and_login(app, env, store, token, api, model_of)


def _pages(app: FastAPI, env: jinja2.Environment, store: RunStore, token: str | None,
           model_of: Callable) -> None:  # fmt: skip

    def page(request: Request, template: str, **values) -> Response:
        if token and not signed_in(request, token):
            return RedirectResponse("/studio/login", status_code=303)
        return HTMLResponse(env.get_template(template).render(**values))

    def with_meta(spec: str | None) -> tuple[ModelRef, dict]:
        ref = model_of(spec)
        return ref, ref.store.read_json(ref.files.network("generator", "json"))

    @app.get("/studio", response_class=HTMLResponse)
    def styles_page(request: Request, model: str | None = None) -> Response:
        ref, meta = with_meta(model)
        label = f"{meta['model']}/{meta['version']}"
        versions = sorted(v for v in store.listdir(layout.model_root(meta["model"]))
                          if v.startswith("v-"))  # fmt: skip
        return page(request, "studio_styles.html.j2", model=label, name=meta["model"],
                    versions=versions, current=model is None, styles=style_rows(meta),
                    seeds=SEEDS)  # fmt: skip

    @app.get("/studio/generate", response_class=HTMLResponse)
    def generate_page(request: Request, model: str | None = None) -> Response:
        ref, meta = with_meta(model)
        return page(request, "studio_generate.html.j2", styles=style_rows(meta),
                    model=f"{meta['model']}/{meta['version']}")  # fmt: skip

    @app.get("/studio/batches", response_class=HTMLResponse)
    def batches_page(request: Request) -> Response:
        listed = []
        for batch_id in store.listdir("batches") if store.exists("batches") else []:
            files = layout.BatchFiles(layout.batch_dir(batch_id))
            if store.exists(files.manifest):
                request_json = store.read_json(files.request) if store.exists(files.request) else {}
                listed.append({"id": batch_id, "model": request_json.get("model")})
        return page(request, "studio_batches.html.j2", batches=listed)

    @app.get("/studio/batches/{batch_id}", response_class=HTMLResponse)
    def batch_page(request: Request, batch_id: str, page_no: int = 0, show: str = "all",
                   sort: str | None = None) -> Response:  # fmt: skip
        frame = batch_manifest(store, batch_id)
        view = _batch_view(frame, page_no, show, sort)
        approved = frame[frame["curation"] == "approved"].groupby("style").size()
        view["approved"] = {str(k): int(v) for k, v in approved.items()}
        return page(request, "studio_batch.html.j2", batch_id=batch_id, **view)


def _batch_view(frame, page_no: int, show: str, sort: str | None) -> dict:
    """One page of a batch: the rows shown (filtered, sorted by a score, paged), the score
    columns, and a ``query`` helper for links that change one setting."""
    scores = [c for c in frame.columns if frame[c].dtype.kind == "f"]
    if show in ("kept", "rejected") and "kept" in frame:
        kept = frame["kept"].fillna(False).astype(bool)
        frame = frame[kept if show == "kept" else ~kept]
    if sort in scores:
        frame = frame.sort_values(sort, ascending=False, kind="stable")
    pages = max(1, -(-len(frame) // PAGE))
    number = min(max(page_no, 0), pages - 1)
    shown = frame.iloc[number * PAGE : (number + 1) * PAGE]

    def query(**change) -> str:
        values = {"page_no": number, "show": show, "sort": sort or "", **change}
        values["page_no"] = values.pop("page", values["page_no"])
        return urlencode(values)

    return {"rows": shown.astype(object).where(shown.notna(), None).to_dict(orient="records"),
            "scores": scores, "total": len(frame), "page": number,
            "pages": pages, "query": query}  # fmt: skip


def _exemplars_and_login(app: FastAPI, env: jinja2.Environment, store: RunStore,
                         token: str | None, api: list, model_of: Callable) -> None:  # fmt: skip
    @app.get("/api/styles/{style}/exemplars.png", dependencies=api)
    def exemplars(style: str, model: str | None = None) -> Response:
        ref = model_of(model)
        meta = ref.store.read_json(ref.files.network("generator", "json"))
        names = [s["name"] for s in style_rows(meta)]
        if style not in names or not safe_name(style):
            raise HTTPException(404, f"no style {style!r} in {meta['model']}/{meta['version']}")
        table = meta["styles"]
        folder = layout.styles_dir(meta["dataset_fingerprint"], table["encoder"])
        rel = layout.StyleFiles(folder).exemplar(style)
        if not store.exists(rel):
            raise HTTPException(404, f"no exemplars of {style!r} in the run store")
        return Response(store.read_bytes(rel), media_type="image/png")

    @app.get("/studio/login", response_class=HTMLResponse)
    def login_page() -> Response:
        return HTMLResponse(env.get_template("studio_login.html.j2").render())

    @app.post("/studio/session")
    async def sign_in(request: Request) -> Response:
        given = (await request.json()).get("token", "") if token else ""
        if not token or not token_matches(f"Bearer {given}", token):
            raise HTTPException(401, "that is not the server's token")
        answer = Response(status_code=204)
        answer.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict")
        return answer

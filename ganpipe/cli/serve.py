"""``ganpipe serve``: the JSON API over the run store, in one process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ganpipe.cli.common import ConfigArg, SetOpt, console, guard, load


def serve(
    config: Optional[Path] = ConfigArg,
    set_: list[str] = SetOpt,
    host: Optional[str] = typer.Option(
        None, "--host", help="Address (default serve.host: 127.0.0.1); any other needs serve.token."
    ),  # fmt: skip
    port: Optional[int] = typer.Option(None, "--port", help="Port (default serve.port: 8000)."),
    model: str = typer.Option(
        "current",
        "--model",
        help="The model requests get when they name none: current, or a model version URI.",
    ),  # fmt: skip
) -> None:
    """Serve generation on demand, models, styles and batches over HTTP (docs at /docs)."""

    def body():
        from ganpipe.config import resolve_env_refs
        from ganpipe.serve.security import check_binding

        cfg = load(config, set_)
        where = "serve"
        token = None
        if cfg.serve.token:
            token = resolve_env_refs({"token": cfg.serve.token}, where)["token"]
        bind_host, bind_port = host or cfg.serve.host, port if port is not None else cfg.serve.port
        check_binding(bind_host, token)
        return cfg, token, bind_host, bind_port

    cfg, token, bind_host, bind_port = guard(body)
    import uvicorn

    from ganpipe.serve.api import create_app

    # Rendering gets all cores but one; the other answers HTTP, parses requests and encodes
    # images (measured: 32 clients 45 -> 189 img/s on 2 cores, benchmarks/serve_throughput.py).
    threads = max(1, (os.cpu_count() or 2) - 1)
    app = guard(lambda: create_app(cfg, token, render_threads=threads, default_model=model))
    console.print(f"serving {cfg.store.root} on http://{bind_host}:{bind_port} "
                  f"({'token required' if token else 'no token: loopback only'})")  # fmt: skip
    uvicorn.run(app, host=bind_host, port=bind_port, log_level="warning")

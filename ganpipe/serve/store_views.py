"""What the API and the studio both read from the run store: a model's styles, and a batch's
manifest with the human verdicts merged in. One module, so neither imports the other's private
names (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import pandas as pd
from fastapi import HTTPException

from ganpipe.serve.security import safe_name
from ganpipe.store import RunStore, layout

CURATION = "curation.parquet"  # human verdicts, beside a batch's manifest


def style_rows(meta: dict) -> list[dict]:
    """A model's styles as the API and the studio list them."""
    from ganpipe.domain.style_table import StyleTable

    table = StyleTable.from_json(meta["styles"])
    rows = zip(table.names, table.ids, table.sizes, table.exemplars)
    return [{"name": n, "id": i, "size": s, "exemplars": len(e)} for n, i, s, e in rows]


def batch_manifest(store: RunStore, batch_id: str) -> pd.DataFrame:
    """The batch's manifest with the ``curation``, ``who`` and ``when`` columns merged in."""
    if not safe_name(batch_id):
        raise HTTPException(404, f"no batch {batch_id!r}")
    folder = layout.batch_dir(batch_id)
    files = layout.BatchFiles(folder)
    if not store.exists(files.manifest):
        raise HTTPException(404, f"no batch {batch_id!r}")
    frame = store.read_parquet(files.manifest)
    curation = read_curation(store, f"{folder}/{CURATION}")
    frame["curation"] = frame["path"].map(lambda p: curation.get(p, {}).get("curation"))
    frame["curated_by"] = frame["path"].map(lambda p: curation.get(p, {}).get("who"))
    frame["curated_at"] = frame["path"].map(lambda p: curation.get(p, {}).get("when"))
    return frame


def read_curation(store: RunStore, rel: str) -> dict[str, dict]:
    """Human verdicts by image path (empty before the first)."""
    if not store.exists(rel):
        return {}
    frame = store.read_parquet(rel)
    return {r["path"]: r for r in frame.astype(object).where(frame.notna(), None)
            .to_dict(orient="records")}  # fmt: skip

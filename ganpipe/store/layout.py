"""Where each stage's results live inside the run store (DESIGN.md, "The run store").

All store paths are built here, so the layout contract is stated once.
"""

from __future__ import annotations


def dataset_dir(name: str, fingerprint: str) -> str:
    return f"datasets/{name}/{fingerprint}"


def dataset_latest(name: str) -> str:
    """Pointer to the fingerprint the last ingest of this dataset produced."""
    return f"datasets/{name}/latest.json"


def dataset_input_cache(name: str, fingerprint: str) -> str:
    """What each input (by URI and size + mtime/ETag) hashed and decoded to; shard paths in it
    are relative to the version's folder, so it moves with the version."""
    return f"{dataset_dir(name, fingerprint)}/inputs.parquet"


def styles_dir(fingerprint: str, encoder: str) -> str:
    return f"styles/{fingerprint}/{encoder}"


def model_dir(name: str, version: str) -> str:
    return f"models/{name}/{version}"


def model_current(name: str) -> str:
    """Plain-text file holding the version production generation uses."""
    return f"models/{name}/current"


def batch_dir(batch_id: str) -> str:
    return f"batches/{batch_id}"

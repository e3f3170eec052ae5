"""Where each stage's results live inside the run store (docs/architecture.md, "The store").

All store paths are built here, so the layout contract is stated once.
"""

from __future__ import annotations

from dataclasses import dataclass


def _inside(folder: str, name: str) -> str:
    """``folder/name``; a store rooted at the folder itself (a model given by URI) has folder
    ``""``, and then the name alone is the path."""
    return f"{folder}/{name}" if folder else name


def _file(name: str) -> property:
    """A path inside the holder's ``folder``: ``ModelFiles(folder).training``."""
    return property(lambda self: _inside(self.folder, name), doc=name)


def dataset_root(name: str) -> str:
    """Every version of one dataset, its ``latest.json`` pointer and ingest's staging."""
    return f"datasets/{name}"


def dataset_lock(name: str, fingerprint: str) -> str:
    """The lock ingest holds while it finishes one version (two ingests of the same data)."""
    return f"{dataset_root(name)}/.lock-{fingerprint}"


def dataset_dir(name: str, fingerprint: str) -> str:
    return f"{dataset_root(name)}/{fingerprint}"


def dataset_latest(name: str) -> str:
    """Pointer to the fingerprint the last ingest of this dataset produced."""
    return f"{dataset_root(name)}/latest.json"


def dataset_input_cache(name: str, fingerprint: str) -> str:
    """What each input (by URI and size + mtime/ETag) hashed and decoded to; shard paths in it
    are relative to the version's folder, so it moves with the version."""
    return f"{dataset_dir(name, fingerprint)}/inputs.parquet"


def styles_dir(fingerprint: str, encoder: str) -> str:
    return f"styles/{fingerprint}/{encoder}"


def model_root(name: str) -> str:
    """Every version of one model and its ``current`` pointer."""
    return f"models/{name}"


def model_dir(name: str, version: str) -> str:
    return f"{model_root(name)}/{version}"


def model_current(name: str) -> str:
    """Plain-text file holding the version production generation uses."""
    return f"{model_root(name)}/current"


def model_current_lock(name: str) -> str:
    """The lock promotion holds while it compares and replaces ``current``."""
    return f"{model_root(name)}/.lock-current"


def projection_dir(model: str, version: str, name: str) -> str:
    """One projected image's results (``ganpipe project``): code, reconstruction, figures."""
    return f"projections/{model}-{version}/{name}"


def writer_of(rel: str) -> str:
    """The command that writes a store path: what a message about a damaged file says to
    rerun."""
    parts = rel.split("/")
    if parts[0] == "datasets":
        return "ganpipe ingest"
    if parts[0] == "styles":
        return "ganpipe styles"
    if parts[0] == "batches":
        return {"filter.json": "ganpipe filter", "report.html": "ganpipe report",
                "metrics.json": "ganpipe report"}.get(parts[-1], "ganpipe generate")  # fmt: skip
    if parts[0] == "projections":
        return "ganpipe project"
    if parts[0] == "models":
        named = {"evaluation.json": "ganpipe evaluate", "report.html": "ganpipe report",
                 "retrain.json": "ganpipe retrain"}  # fmt: skip
        if "evaluations" in parts:
            return "ganpipe retrain"
        return named.get(parts[-1], "ganpipe train")
    return "the stage that wrote it"


def batch_dir(batch_id: str) -> str:
    return f"batches/{batch_id}"


# The files inside each folder. Stages name a result as ``layout.ModelFiles(folder).training``
# rather than spelling ``f"{folder}/training.json"``, so a file's name is written only here.


@dataclass(frozen=True)
class DatasetFiles:
    """One ingested dataset version (``dataset_dir``)."""

    folder: str

    manifest = _file(
        "manifest.parquet"
    )  # one row per accepted image: id, split, shard, style label
    rejects = _file("rejects.parquet")  # quarantined inputs with their reason
    inputs = _file("inputs.parquet")  # the input cache (``dataset_input_cache``)
    shards = _file("shards")  # folder of image shards
    summary = _file("summary.json")  # counts shown by ``ganpipe ingest``
    config = _file("config.yaml")  # the resolved config that produced it


@dataclass(frozen=True)
class StyleFiles:
    """The styles of one dataset version under one encoder (``styles_dir``)."""

    folder: str

    table = _file("styles.parquet")  # names, sizes and centroids
    table_json = _file("styles.json")  # the same table as JSON (hashed into model versions)
    embeddings = _file("embeddings.parquet")
    assignments = _file("assignments.parquet")  # image id -> style name
    exemplars = _file("exemplars.png")  # one row of real images per style
    lineage = _file("lineage.json")  # styles kept, new, merged, vanished against the previous
    encoder_meta = _file("encoder.json")  # a fitted encoder's constructor arguments
    encoder_weights = _file("encoder.safetensors")
    config = _file("config.yaml")

    def exemplar(self, style: str) -> str:
        return _inside(self.folder, f"exemplars/{style}.png")


@dataclass(frozen=True)
class ModelFiles:
    """One trained model version (``model_dir``)."""

    folder: str

    checkpoints = _file("checkpoints")  # folder of step-XXXXXXXX.pt files
    training = _file("training.json")  # written last: marks the version finished
    metrics = _file("metrics.parquet")  # training curves
    samples = _file("samples.png")  # one row per style from the exported generator
    config = _file("config.yaml")
    evaluation = _file("evaluation.json")
    retrain = _file("retrain.json")  # the champion/challenger decision
    report = _file("report.html")
    tensorboard = _file("tensorboard")

    def gate_evaluation(self, key: str) -> str:
        """An evaluation made for the retrain gate, by what makes it comparable (its key)."""
        return _inside(self.folder, f"evaluations/{key}.json")

    def network(self, name: str, suffix: str = "safetensors") -> str:
        """An exported network: ``generator``/``discriminator`` with ``.safetensors``/``.json``."""
        return _inside(self.folder, f"{name}.{suffix}")

    def export(self, name: str) -> str:
        """An export's folder (``ganpipe export``): ``onnx``, ``torchscript-uint8``..."""
        return _inside(self.folder, f"export/{name}")

    def step_samples(self, step: int) -> str:
        return _inside(self.folder, f"samples/step-{step:08d}.png")


@dataclass(frozen=True)
class BatchFiles:
    """One generated batch (``batch_dir``)."""

    folder: str

    manifest = _file("manifest.parquet")  # one row per image, with filter results once filtered
    request = _file("request.json")  # what was asked: model, counts, seeds, options
    config = _file("config.yaml")
    chunks = _file("chunks")  # folder of per-chunk manifests while a batch is assembled
    strip = _file("strip.png")  # interpolation strip
    animation = _file("animation.gif")
    filter = _file("filter.json")  # filter summary
    metrics = _file("metrics.json")  # batch metrics shown in the report
    report = _file("report.html")

    def chunk(self, start: int, stop: int) -> str:
        return _inside(self.folder, f"chunks/{start:08d}-{stop:08d}.parquet")

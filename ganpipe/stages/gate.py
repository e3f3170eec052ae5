"""Champion/challenger: whether a freshly trained model replaces the one production uses.

Scheduled retraining must never make production worse by itself. A challenger is promoted to
``models/<name>/current`` only if none of the gated metrics is worse than the champion's beyond
``retrain.tolerance`` (relative); with no champion, the first model is promoted. The decision,
with both sets of metrics, is written beside the challenger (``retrain.json``) so an operator
can see later why production did or did not change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ganpipe.config import Config
from ganpipe.errors import ConfigError
from ganpipe.generation.models import ModelRef
from ganpipe.store import RunStore, layout


@dataclass
class Decision:
    action: str  # promoted | kept
    challenger: str  # name/version
    champion: str | None
    reasons: list[str] = field(default_factory=list)  # one per metric that decided
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    tolerance: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def trained_version_for(store: RunStore, model_name: str, fingerprint: str) -> str | None:
    """A finished model version trained on this dataset fingerprint, if any (newest first by
    name is not meaningful, so the current version is preferred when it qualifies)."""
    root = layout.model_root(model_name)
    current_file = layout.model_current(model_name)
    current = store.read_text(current_file).strip() if store.exists(current_file) else None
    versions = [v for v in store.listdir(root) if v.startswith("v-")]
    for version in sorted(versions, key=lambda v: v != current):
        files = layout.ModelFiles(layout.model_dir(model_name, version))
        description = files.network("generator", "json")
        if not store.exists(files.training) or not store.exists(description):
            continue
        if store.read_json(description).get("dataset_fingerprint") == fingerprint:
            return version
    return None


def stored_metrics(model: ModelRef, config: Config) -> dict[str, float] | None:
    """A model's metrics from its ``evaluation.json``, if it was evaluated with these
    settings (otherwise the numbers are not comparable and it is evaluated again)."""
    rel = model.files.evaluation
    if not model.store.exists(rel):
        return None
    found = model.store.read_json(rel)
    e = config.evaluate
    same = (
        found.get("settings", {}).get("per_style") == e.per_style
        and found.get("settings", {}).get("seed") == e.seed
    )
    return dict(found["metrics"]) if same else None


def decide(
    challenger: str,
    challenger_metrics: dict[str, float],
    champion_name: str | None,
    champion_metrics: dict[str, float] | None,
    gate: list[str],
    tolerance: float,
    higher_is_better: dict[str, bool],
) -> Decision:
    unknown = [g for g in gate if g not in higher_is_better]
    if unknown:
        raise ConfigError(
            f"unknown metrics in retrain.gate: {', '.join(unknown)}",
            where="retrain.gate",
            fix=f"use some of: {', '.join(higher_is_better)}",
        )
    decision = Decision(
        "promoted",
        challenger,
        champion_name,
        challenger_metrics=dict(challenger_metrics),
        champion_metrics=dict(champion_metrics or {}),
        tolerance=tolerance,
    )
    if champion_metrics is None:
        decision.reasons.append("no current model: the first trained model is promoted")
        return decision
    for name in gate:
        new, old = challenger_metrics[name], champion_metrics[name]
        slack = tolerance * max(abs(old), 1e-6)
        worse = new < old - slack if higher_is_better[name] else new > old + slack
        direction = "higher" if higher_is_better[name] else "lower"
        verdict = "worse" if worse else "not worse"
        decision.reasons.append(
            f"{name}: {new:.4g} vs {old:.4g} ({direction} is better; {verdict} "
            f"within {tolerance:.0%})"
        )
        if worse:
            decision.action = "kept"
    return decision


def record(store: RunStore, model_folder: str, decision: Decision) -> str:
    return store.write_json(layout.ModelFiles(model_folder).retrain, decision.to_dict())

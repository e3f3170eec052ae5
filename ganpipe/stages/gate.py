"""Champion/challenger: whether a freshly trained model replaces the one production uses.

Scheduled retraining must never make production worse by itself. A challenger is promoted to
``models/<name>/current`` only if none of the gated metrics is worse than the champion's beyond
``retrain.tolerance`` (relative); with no champion, the first model is promoted. The decision,
with both sets of metrics, is written beside the challenger (``retrain.json``) so an operator
can see later why production did or did not change.

``gate`` is the stage: it evaluates both models on the same images, reuses a stored evaluation of
the champion, applies the rule (``decide``, ``judge_per_style``), promotes through a
compare-and-swap and records the decision. It needs no Prefect: the retrain flow wraps it in a
task, and a notebook calls it directly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from ganpipe.domain.model_pointers import ModelRef, champion, promote
from ganpipe.errors import ConfigError
from ganpipe.hashing import stable_hash
from ganpipe.progress import log
from ganpipe.store import RunStore, layout

if TYPE_CHECKING:
    from ganpipe.config import Config
    from ganpipe.registry import Registry
    from ganpipe.stages.train import TrainResult


@dataclass
class Decision:
    action: str  # promoted | kept
    challenger: str  # name/version
    champion: str | None
    reasons: list[str] = field(default_factory=list)  # one per metric that decided
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    tolerance: float = 0.0
    # what both were measured on: the feature space (by content hash), the dataset version
    # whose held-out images were the reference, and the styles the champion lacks
    space: str | None = None
    space_hash: str | None = None
    dataset_fingerprint: str | None = None
    split: str | None = None
    missing_styles: list[str] = field(default_factory=list)
    # style -> metric -> {challenger, champion, delta, worse}: the styles both models have
    per_style: dict[str, dict] = field(default_factory=dict)

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


# What makes two evaluations comparable: measured in the same space (by content hash), on the
# same reference images (dataset version and split), with the same samples.
COMPARABLE = ("space_hash", "dataset_fingerprint", "split", "per_style", "seed")


def evaluation_key(settings: dict) -> str:
    return stable_hash({k: settings.get(k) for k in COMPARABLE}, length=16)


def stored_evaluation(model: ModelRef, settings: dict) -> dict | None:
    """The model's gate evaluation made with these very settings, if it was made before
    (a rerun of the gate, or a second challenger on the same data); otherwise None, and it is
    evaluated again: figures from another space or other images never stand in."""
    rel = model.files.gate_evaluation(evaluation_key(settings))
    if not model.store.exists(rel):
        return None
    found = model.store.read_json(rel)
    same = all(found.get("settings", {}).get(k) == settings.get(k) for k in COMPARABLE)
    return found if same else None


def keep_evaluation(model: ModelRef, evaluation: dict) -> None:
    model.store.write_json(
        model.files.gate_evaluation(evaluation_key(evaluation["settings"])), evaluation
    )


def per_style_deltas(challenger: dict, champion: dict, gate: list[str], tolerance: float,
                     higher_is_better: dict[str, bool]) -> dict[str, dict]:  # fmt: skip
    """For each style both evaluations have (in the pinned space), each gated metric that is
    measured per style: both values, the change, and whether it is worse beyond ``tolerance``
    (relative, as the pooled gate)."""
    space = challenger["settings"]["space"]
    new = challenger["spaces"][space]["per_style"]
    old = champion["spaces"][space]["per_style"]
    out: dict[str, dict] = {}
    for style in [s for s in new if s in old]:
        rows = {}
        for metric in gate:
            a, b = new[style].get(metric), old[style].get(metric)
            if a is None or b is None:
                continue
            slack = tolerance * max(abs(b), 1e-6)
            worse = a < b - slack if higher_is_better[metric] else a > b + slack
            rows[metric] = {"challenger": a, "champion": b, "delta": round(a - b, 6),
                            "worse": bool(worse)}  # fmt: skip
        out[style] = rows
    return out


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


def judge_per_style(decision: Decision, deltas: dict[str, dict], enforce: bool,
                    tolerance: float) -> None:  # fmt: skip
    """Record the per-style changes; with ``enforce`` (``retrain.enforce_per_style``), a challenger
    that ruins one style is kept even when its pooled figures improved."""
    decision.per_style = deltas
    worse = [(s, m) for s, rows in deltas.items() for m, r in rows.items() if r["worse"]]
    if not worse:
        return
    listed = ", ".join(f"{s} ({m} {deltas[s][m]['champion']:.3g} -> "
                       f"{deltas[s][m]['challenger']:.3g})" for s, m in worse)  # fmt: skip
    if enforce and decision.champion is not None:
        decision.action = "kept"
        decision.reasons.append(f"worse beyond {tolerance:.0%} in a style: {listed}")
    else:
        decision.reasons.append(f"per style, worse beyond {tolerance:.0%} (not gated): {listed}")


def record(store: RunStore, model_folder: str, decision: Decision) -> str:
    return store.write_json(layout.ModelFiles(model_folder).retrain, decision.to_dict())


def gate(config: Config, store: RunStore, trained: TrainResult | str,
         registry: Registry | None = None) -> Decision:  # fmt: skip
    """Whether the model version ``trained`` (a ``TrainResult`` or its version) replaces the
    current model, promoting it if so, with the decision recorded beside it (``retrain.json``).

    Challenger and champion are measured on the same images (the challenger's dataset's
    held-out split, the same seeds) in the same pinned space; a stored evaluation of the
    champion with the same settings is reused. The promotion is a compare-and-swap: if another
    run changed the current model meanwhile, the challenger is kept, not promoted over a model
    it was never compared with."""
    from ganpipe.registry import load_registry
    from ganpipe.stages.evaluate import HIGHER_IS_BETTER, evaluate

    registry = registry or load_registry(config)
    version = trained if isinstance(trained, str) else trained.version
    folder = layout.model_dir(config.model_name, version)
    description = layout.ModelFiles(folder).network("generator", "json")
    fingerprint = store.read_json(description, dict)["dataset_fingerprint"]
    challenger_model = ModelRef(store, folder)
    challenger = evaluate(config, store, challenger_model, registry, against=fingerprint,
                          write=False).to_dict()  # fmt: skip
    keep_evaluation(challenger_model, challenger)
    champ = champion(config, store)
    champ_version = champ.folder.rsplit("/", 1)[-1] if champ is not None else None
    champ_eval = None
    if champ is not None and champ.folder != challenger_model.folder:
        champ_eval = stored_evaluation(champ, challenger["settings"])
        if champ_eval is None:
            champ_eval = evaluate(config, store, champ, registry, against=fingerprint,
                                  write=False).to_dict()  # fmt: skip
            keep_evaluation(champ, champ_eval)
    r = config.retrain
    decision = decide(challenger["model"], challenger["metrics"],
                      f"{config.model_name}/{champ_version}" if champ_eval else None,
                      champ_eval["metrics"] if champ_eval else None, r.gate, r.tolerance,
                      HIGHER_IS_BETTER)  # fmt: skip
    settings = challenger["settings"]
    decision.space, decision.space_hash = settings["space"], settings["space_hash"]
    decision.dataset_fingerprint, decision.split = fingerprint, settings["split"]
    if champ_eval is not None:
        decision.missing_styles = list(champ_eval["settings"].get("missing_styles", []))
        deltas = per_style_deltas(challenger, champ_eval, r.gate, r.per_style_tolerance,
                                  HIGHER_IS_BETTER)  # fmt: skip
        judge_per_style(decision, deltas, r.enforce_per_style, r.per_style_tolerance)
    if decision.action == "promoted" and not promote(
        store, config.model_name, version, expected=champ_version
    ):
        decision.action = "kept"
        decision.reasons.append(
            "another run changed the current model while this one was evaluated; it is not "
            "replaced by a model compared with its predecessor"
        )
    record(store, folder, decision)
    log.info("%s %s: %s", decision.action, decision.challenger, "; ".join(decision.reasons))
    return decision

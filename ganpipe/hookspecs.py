"""Every hook a ganpipe plugin can implement.

A plugin is a module (or object) with functions named like the hooks below, decorated with
``ganpipe.hookimpl``. It is found through the ``ganpipe`` entry-point group of an installed
package, or named by dotted module path under ``plugins:`` in the config. ganpipe's own built-in
components register through these same hooks (``ganpipe.builtin``): no component is special.

Registration hooks return a mapping ``name -> factory``. Every plugin's mapping is collected; a
name supplied twice is an error that names both plugins. Factories are called with the keyword
options the config gives for that component (e.g. ``train.loss_options``) plus the arguments
listed in each hook's docstring, and should raise ``TypeError`` or ``ValueError`` for bad
options: ganpipe turns those into a config error naming the key.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("ganpipe")


# -------------------------------------------------------------------------------------------
# Registration hooks: components chosen by name in the config
# -------------------------------------------------------------------------------------------


@hookspec
def ganpipe_generators() -> dict[str, Any]:
    """Register generator architectures (config ``model.generator``).

    Each factory is called as ``factory(num_styles=int, image_size=int, **options)`` and must
    return a ``torch.nn.Module`` with an integer attribute ``z_dim`` whose
    ``forward(z, style, style_embedding=None)`` maps latents ``(N, z_dim)`` and style indices
    ``(N,)`` (long) to images ``(N, 3, image_size, image_size)`` in ``[-1, 1]``. Its
    constructor arguments must be JSON-serialisable: they are saved beside the exported weights.

    Return a mapping of name to factory, or an empty mapping.
    """


@hookspec
def ganpipe_discriminators() -> dict[str, Any]:
    """Register discriminator architectures (config ``model.discriminator``).

    Each factory is called as ``factory(num_styles=int, image_size=int, **options)`` and must
    return a ``torch.nn.Module`` whose ``forward(images, style)`` returns one realism logit per
    image, shape ``(N,)``. The realism quality filter reuses it.

    Return a mapping of name to factory, or an empty mapping.
    """


@hookspec
def ganpipe_losses() -> dict[str, Any]:
    """Register adversarial losses (config ``train.loss``).

    Each factory is called as ``factory(**options)`` and must return an object with
    ``d_loss(real_logits, fake_logits) -> Tensor`` and ``g_loss(fake_logits, real_logits) ->
    Tensor`` (scalars; ``real_logits`` lets relativistic losses compare against real data). A
    loss that needs a penalty of its own (WGAN-GP) may also define ``d_penalty`` with the
    regularisers' signature; it is added to the discriminator's objective.

    Return a mapping of name to factory, or an empty mapping.
    """


@hookspec
def ganpipe_regularizers() -> dict[str, Any]:
    """Register training regularisers (config ``train.regularizers: {name: options}``).

    Each factory is called as ``factory(**options)`` and must return an object with
    ``d_penalty(discriminator, real_images, fake_images, style, step) -> Tensor | None`` and
    ``g_penalty(fakes, latents, style, step) -> Tensor | None``; ``None`` means "nothing this
    step" (lazy regularisation). The two halves of every fake batch share their styles
    (``style[:n] == style[n:2n]``), so a penalty can compare two latents of one style. A
    regulariser that needs the run's styles may define ``bind(context)``: it is called once
    before training with ``context.style_encoder`` (the dataset's encoder, on the training
    device), ``context.centroids`` (styles x D) and ``context.style_names``.

    Return a mapping of name to factory, or an empty mapping.
    """


@hookspec
def ganpipe_augmentations() -> dict[str, Any]:
    """Register differentiable augmentations applied to real and fake images alike
    (config ``train.augmentations: {name: options}``).

    Each factory is called as ``factory(**options)`` and must return a callable
    ``augment(images, generator: torch.Generator) -> images`` that keeps the shape.

    Return a mapping of name to factory, or an empty mapping.
    """


@hookspec
def ganpipe_style_encoders() -> dict[str, Any]:
    """Register style encoders (config ``style.encoder``).

    Each factory is called as ``factory(image_size=int, **options)`` and must return a
    ``torch.nn.Module`` with an integer attribute ``embedding_dim`` whose ``forward(images)``
    maps ``(N, 3, H, W)`` in ``[-1, 1]`` to embeddings ``(N, embedding_dim)``. It must be
    differentiable (training may backpropagate through it) and deterministic for given weights.
    It must not download anything: take weights from a local path or store URI option.

    Return a mapping of name to factory, or an empty mapping.
    """


@hookspec
def ganpipe_quality_filters() -> dict[str, Any]:
    """Register quality filters (config ``filter.filters``).

    Each factory is called as ``factory(**options)`` and must return an object with a
    ``higher_is_better: bool`` attribute and ``score(context) -> (scores, passed)``: two
    arrays with one entry per candidate image. ``context`` is a
    ``ganpipe.stages.filter.FilterContext`` holding the candidates, the real data, the style
    encoder and the discriminator.

    Return a mapping of name to factory, or an empty mapping.
    """


@hookspec
def ganpipe_sources() -> dict[str, Any]:
    """Register dataset sources, keyed by URI scheme (``s3``, ``file``) or file suffix
    (``.csv``): the first match of suffix, then scheme, handles a ``dataset.sources`` entry.

    Each factory is called as ``factory(uri=str, config=DatasetConfig, storage_options=dict)``
    and must return an iterable of ``ganpipe.data.source_listing.SourceItem`` (URI, label, and a
    callable that returns the raw bytes).

    Return a mapping of name to factory, or an empty mapping.
    """


# -------------------------------------------------------------------------------------------
# Event hooks: observe the pipeline
# -------------------------------------------------------------------------------------------


@hookspec
def ganpipe_configure(config: Any) -> None:
    """Called once after the config is validated and all plugins are loaded, before any stage
    runs. ``config`` is the ``ganpipe.config.Config``; a plugin may read it, or raise
    ``ganpipe.errors.ConfigError`` to refuse it. Return value is ignored."""


@hookspec
def ganpipe_train_step_end(state: Any, metrics: dict[str, float]) -> None:
    """Called every ``train.log_every`` steps with the training state (``step``, ``generator``,
    ``discriminator``, ``config``) and the logged metrics. Return value is ignored."""


@hookspec
def ganpipe_checkpoint_saved(uri: str, state: Any) -> None:
    """Called after a checkpoint has been written completely, with its URI and the training
    state. Return value is ignored."""


@hookspec
def ganpipe_batch_generated(batch: Any) -> None:
    """Called after a generation batch's images and manifest are written, with a dict holding
    ``batch_id``, ``uri`` and ``count``. Return value is ignored."""

"""The protocols, one per kind of component and one per optional capability, and ``CONTRACTS``,
the protocol of each kind. What each asks and why: ``ganpipe.contracts``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, TypeVar, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ganpipe.contracts.contexts import FilterContext, TrainingContext
    from ganpipe.data.source_listing import SourceItem

T_co = TypeVar("T_co", covariant=True)

#: A registered factory: called with the component's config options as keywords (plus the
#: arguments its registration hook names, e.g. ``num_styles`` and ``image_size``) and returning
#: the component. Bad options should raise ``TypeError`` or ``ValueError``: ganpipe turns those
#: into a config error naming the config key.
ComponentFactory = Callable[..., T_co]


# Networks --------------------------------------------------------------------------------------


@runtime_checkable
class Generator(Protocol):
    """A ``torch.nn.Module`` turning latents and styles into images.

    ``forward`` maps latents ``(N, z_dim)`` (float) and style indices ``(N,)`` (long) to images
    ``(N, 3, image_size, image_size)`` in ``[-1, 1]``. ``style_embedding`` (``(N, D)``, optional)
    steers it with a continuous style code when the generator was built with one; such a
    generator says so with an integer attribute ``style_embedding_dim`` (``D``; absent or 0:
    none). Its factory's arguments must be JSON-serialisable: they are saved beside the
    exported weights so the generator can be rebuilt. It takes part in ``ganpipe generate`` as
    far as its methods allow: see ``ConditionalGenerator`` and ``MappedGenerator``.
    """

    z_dim: int

    def forward(
        self, z: torch.Tensor, style: torch.Tensor, style_embedding: torch.Tensor | None = None
    ) -> torch.Tensor: ...


@runtime_checkable
class ConditionalGenerator(Generator, Protocol):
    """A generator whose conditioning can be blended: interpolation between styles and
    reference images need it.

    ``condition(style, style_embedding=None)`` takes style indices ``(N,)`` (long) or weights
    over the styles ``(N, num_styles)`` (float; a one-hot row must give exactly that style) and
    returns the conditioning ``(N, C)`` every layer sees; ``render(z, cond)`` returns the images
    ``forward`` would, so ``forward(z, s) == render(z, condition(s))``.
    """

    def condition(
        self, style: torch.Tensor, style_embedding: torch.Tensor | None = None
    ) -> torch.Tensor: ...

    def render(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class MappedGenerator(Generator, Protocol):
    """A generator with a mapping network: truncation toward a style's mean code needs it.

    ``condition`` is as in ``ConditionalGenerator``; ``map_latent(z, cond)`` returns the
    intermediate code ``w`` ``(N, w_dim)``; ``synthesis(w)`` renders it, and also accepts one
    code per level ``(N, num_levels, w_dim)``.
    """

    def condition(
        self, style: torch.Tensor, style_embedding: torch.Tensor | None = None
    ) -> torch.Tensor: ...

    def map_latent(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor: ...

    def synthesis(self, w: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class MixingGenerator(MappedGenerator, Protocol):
    """A mapped generator that says how many levels ``synthesis`` works at (4x4 is level 0):
    style mixing takes coarse levels from one code and fine levels from another."""

    num_levels: int


@runtime_checkable
class NoiseInputs(MappedGenerator, Protocol):
    """A mapped generator with per-pixel noise inputs: ``noise_shapes()`` gives each layer's
    (H, W) and ``synthesis(w, noise)`` takes one map per layer ((N or 1, 1, H, W)). A
    projection optimises them with the codes (the StyleGAN2 projector's noise)."""

    def noise_shapes(self) -> list[tuple[int, int]]: ...


@runtime_checkable
class Discriminator(Protocol):
    """A ``torch.nn.Module`` whose ``forward(images, style)`` maps images ``(N, 3, H, W)`` in
    ``[-1, 1]`` and style indices ``(N,)`` to one realism logit per image, shape ``(N,)``
    (higher: more real). The realism quality filter reuses it."""

    def forward(self, images: torch.Tensor, style: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class FeatureDiscriminator(Discriminator, Protocol):
    """A discriminator that shows its intermediate activations: ``feature_maps(images)``
    returns a list of (N, C, H, W) tensors. A projection compares images in these features as
    well as in pixels (a perceptual distance learnt from the run's own data)."""

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]: ...


# Training --------------------------------------------------------------------------------------


@runtime_checkable
class Loss(Protocol):
    """An adversarial loss: two scalar tensors from realism logits ``(N,)``.

    ``real_logits`` reaches ``g_loss`` too, so relativistic losses can compare against real
    data. A loss that needs a penalty of its own (WGAN-GP) also satisfies
    ``DiscriminatorPenalty``; that penalty is added to the discriminator's objective.
    """

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor: ...

    def g_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class DiscriminatorPenalty(Protocol):
    """A term added to the discriminator's objective: a scalar tensor, or ``None`` for
    "nothing this step" (lazy regularisation). Every regulariser has one; a loss may."""

    def d_penalty(
        self,
        discriminator: torch.nn.Module,
        real_images: torch.Tensor,
        fake_images: torch.Tensor,
        style: torch.Tensor,
        step: int,
    ) -> torch.Tensor | None: ...


@runtime_checkable
class Regulariser(DiscriminatorPenalty, Protocol):
    """A training regulariser: ``d_penalty`` (see ``DiscriminatorPenalty``) and
    ``g_penalty(fakes, latents, style, step)``, each a scalar tensor or ``None``.

    The two halves of every fake batch share their styles (``style[:n] == style[n:2n]``), so a
    penalty can compare two latents of one style. One that needs the run's styles also
    satisfies ``Bindable``.
    """

    def g_penalty(
        self, fakes: torch.Tensor, latents: torch.Tensor, style: torch.Tensor, step: int
    ) -> torch.Tensor | None: ...


@runtime_checkable
class Bindable(Protocol):
    """A regulariser that needs the run's styles: ``bind(context)`` is called once before
    training with ``context.style_encoder`` (the dataset's encoder, on the training device),
    ``context.centroids`` (styles x D) and ``context.style_names``."""

    def bind(self, context: TrainingContext) -> None: ...


@runtime_checkable
class Augmentation(Protocol):
    """A differentiable augmentation applied to real and fake images alike:
    ``augment(images, generator)`` returns images of the same shape, drawing its randomness
    only from ``generator`` (a ``torch.Generator``) so runs are reproducible."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


@runtime_checkable
class LogitPenalty(Protocol):
    """A regulariser that works on the logits the step already computed (no extra
    discriminator pass): ``d_logit_penalty(real_logits, fake_logits, step)`` returns a scalar
    tensor added to the discriminator's objective, or ``None``. LeCam is one."""

    def d_logit_penalty(
        self, real_logits: torch.Tensor, fake_logits: torch.Tensor, step: int
    ) -> torch.Tensor | None: ...


@runtime_checkable
class Adaptive(Protocol):
    """An augmentation or regulariser that adapts to how the discriminator is doing:
    ``observe(real_logits)`` is called after every discriminator step with its logits on this
    step's reals (detached). Adaptive augmentation (ADA) sets its strength this way."""

    def observe(self, real_logits: torch.Tensor) -> None: ...


@runtime_checkable
class Stateful(Protocol):
    """A training component with state that must survive a resume (ADA's strength, LeCam's
    anchors): ``state_dict()`` returns plain numbers or tensors (it is saved in the checkpoint
    and read back with ``weights_only=True``), ``load_state_dict(state)`` restores them.

    A checkpoint holds rank 0's state alone, so under ``torchrun`` state learnt from batches
    must be the same on every rank: sum what each rank observes with
    ``ganpipe.training.distributed.all_sum`` (a no-op on one process), as the built-ins do."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class ReportsMetrics(Protocol):
    """A training component whose own figures belong in the training metrics (and the model
    report): ``metrics()`` returns ``{name: float}``, read at every ``train.log_every`` step."""

    def metrics(self) -> dict[str, float]: ...


# Styles and filters ----------------------------------------------------------------------------


@runtime_checkable
class StyleEncoder(Protocol):
    """A ``torch.nn.Module`` mapping images ``(N, 3, H, W)`` in ``[-1, 1]`` to embeddings
    ``(N, embedding_dim)``.

    It must be differentiable (training may backpropagate through it) and deterministic for
    given weights, and must not download anything: weights come from a local path or store URI
    option. One that learns from the data also satisfies ``TrainableStyleEncoder``.
    """

    embedding_dim: int

    def forward(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class TrainableStyleEncoder(StyleEncoder, Protocol):
    """A style encoder that learns from the dataset: ``fit(draw, log=None)`` trains it, drawing
    batches with ``draw(n, generator) -> images (n, 3, H, W) in [-1, 1]`` and reporting
    ``log(steps_done, loss)`` now and then; ``ganpipe styles`` calls it once per dataset version
    and stores the weights. An integer attribute ``steps`` (optional) sizes the progress bar."""

    def fit(
        self,
        draw: Callable[[int, torch.Generator], torch.Tensor],
        log: Callable[[int, float], None] | None = None,
    ) -> None: ...


@runtime_checkable
class QualityFilter(Protocol):
    """Scores generated candidates: ``score(context)`` returns ``(scores, passed)``, two
    arrays (float, bool) with one entry per candidate in ``context.images``.

    ``higher_is_better`` says which way ``scores`` rank candidates when ``filter.keep`` is
    ``top_k``. ``context`` (``ganpipe.contracts.contexts.FilterContext``) holds the candidates, a
    sample of the real data, the style table and encoder, and the discriminator.
    """

    higher_is_better: bool

    def score(self, context: FilterContext) -> tuple[np.ndarray, np.ndarray]: ...


@runtime_checkable
class Source(Protocol):
    """What a source factory returns: an iterable of ``ganpipe.data.source_listing.SourceItem``
    (URI, label, a callable returning the raw bytes); it is iterated once."""

    def __iter__(self) -> Iterator[SourceItem]: ...


# Event hook payloads -------------------------------------------------------------------------


class BatchInfo(TypedDict):
    """What ``ganpipe_batch_generated`` receives about a written batch."""

    batch_id: str
    uri: str  # the batch folder
    model: str  # name/version of the model that made it
    count: int  # images in the batch
    written: int  # images written by this run (a rerun skips the others)
    chunks: int
    strip: str | None  # interpolations: all frames side by side (PNG)
    animation: str | None  # interpolations: the frames as an animated GIF

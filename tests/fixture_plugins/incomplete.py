"""Components that each lack one member of their kind's contract (ganpipe/contracts/): the
registry must refuse every one when it is created, naming the plugin and the missing member."""

import torch
from torch import nn

from ganpipe import hookimpl


class NoZDim(nn.Module):
    """A generator that does not say how long its latents are."""

    def __init__(self, num_styles: int, image_size: int):
        super().__init__()

    def forward(self, z, style, style_embedding=None):
        raise AssertionError("a contract check must not call the component")


class NotAModule:
    """A generator with the right members that is not a torch module."""

    z_dim = 8

    def __init__(self, num_styles: int, image_size: int):
        pass

    def forward(self, z, style, style_embedding=None):
        return torch.zeros(len(z), 3, 8, 8)


class NoForward(nn.Module):
    """A discriminator that never overrides ``forward``."""

    def __init__(self, num_styles: int, image_size: int):
        super().__init__()


class HalfLoss:
    """A loss without ``g_loss``."""

    def d_loss(self, real_logits, fake_logits):
        return real_logits.mean()


class DOnly:
    """A regulariser without ``g_penalty``."""

    def d_penalty(self, discriminator, real_images, fake_images, style, step):
        return None


class NotCallable:
    """An augmentation that cannot be applied."""


class NoEmbeddingDim(nn.Module):
    def __init__(self, image_size: int):
        super().__init__()

    def forward(self, images):
        return images.mean(dim=(2, 3))


class NoDirection:
    """A quality filter that does not say which way its scores rank."""

    def score(self, context):
        raise AssertionError("a contract check must not call the component")


@hookimpl
def ganpipe_generators():
    return {"no_z_dim": NoZDim, "not_a_module": NotAModule}


@hookimpl
def ganpipe_discriminators():
    return {"no_forward": NoForward}


@hookimpl
def ganpipe_losses():
    return {"half_loss": HalfLoss}


@hookimpl
def ganpipe_regularizers():
    return {"d_only": DOnly}


@hookimpl
def ganpipe_augmentations():
    return {"not_callable": NotCallable}


@hookimpl
def ganpipe_style_encoders():
    return {"no_embedding_dim": NoEmbeddingDim}


@hookimpl
def ganpipe_quality_filters():
    return {"no_direction": NoDirection}


@hookimpl
def ganpipe_sources():
    return {"nothing": lambda uri, config, storage_options: None}

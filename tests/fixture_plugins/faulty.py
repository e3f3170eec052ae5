"""Components and observers that misbehave in every way a plugin can: raise, return the wrong
type, return tensors of the wrong shape. Event hooks misbehave only when switched on in FAIL."""

import torch
from torch import nn

from ganpipe import hookimpl
from ganpipe.data.source_listing import SourceItem

FAIL = {"configure": False, "train_step_end": False, "batch_generated": False}


class ObserverBug(RuntimeError):
    pass


class WrongShapeGenerator(nn.Module):
    """Renders images of half the asked-for side."""

    def __init__(self, num_styles: int, image_size: int, z_dim: int = 8):
        super().__init__()
        self.z_dim, self.image_size = z_dim, image_size
        self.net = nn.Linear(z_dim, 3 * (image_size // 2) ** 2)

    def forward(self, z, style, style_embedding=None):
        side = self.image_size // 2
        return torch.tanh(self.net(z)).view(len(z), 3, side, side)


class FloatLoss:
    """Returns Python floats instead of tensors."""

    def d_loss(self, real_logits, fake_logits):
        return 0.5

    def g_loss(self, fake_logits, real_logits):
        return 0.5


class RaisingLoss:
    def d_loss(self, real_logits, fake_logits):
        raise ValueError("this loss is broken")

    def g_loss(self, fake_logits, real_logits):
        raise ValueError("this loss is broken")


class Unbuildable:
    def __init__(self):
        raise RuntimeError("cannot build this loss")


class Cropping:
    """An augmentation that does not keep the shape."""

    def __call__(self, images, generator):
        return images[:, :, : images.shape[2] // 2, : images.shape[3] // 2]


class ShortEncoder(nn.Module):
    """One embedding too few."""

    embedding_dim = 4

    def __init__(self, image_size: int):
        super().__init__()

    def forward(self, images):
        return images.mean(dim=(2, 3)).repeat(1, 2)[:-1, :4]


class RaisingEncoder(nn.Module):
    embedding_dim = 4

    def __init__(self, image_size: int):
        super().__init__()

    def forward(self, images):
        raise RuntimeError("this encoder is broken")


def raising_source(uri, config, storage_options):
    yield SourceItem(f"{uri}/first.png", None, lambda: b"")
    raise RuntimeError("the catalogue service is broken")


@hookimpl
def ganpipe_generators():
    return {"wrong_shape": WrongShapeGenerator}


@hookimpl
def ganpipe_losses():
    return {"float_loss": FloatLoss, "raising_loss": RaisingLoss, "unbuildable": Unbuildable}


@hookimpl
def ganpipe_augmentations():
    return {"cropping": Cropping}


@hookimpl
def ganpipe_style_encoders():
    return {"short": ShortEncoder, "raising": RaisingEncoder}


@hookimpl
def ganpipe_sources():
    return {"broken": raising_source}


@hookimpl
def ganpipe_configure(config):
    if FAIL["configure"]:
        raise ObserverBug("configure hook is broken")


@hookimpl
def ganpipe_train_step_end(state, metrics):
    if FAIL["train_step_end"]:
        raise ObserverBug("step hook is broken")


@hookimpl
def ganpipe_batch_generated(batch):
    if FAIL["batch_generated"]:
        raise ObserverBug("batch hook is broken")

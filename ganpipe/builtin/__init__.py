"""ganpipe's own components, registered through the public hooks like any outside plugin.

What each factory builds satisfies its kind's protocol in ``ganpipe/contracts/`` (checked by
the registry at creation, and for every built-in by tests/test_contracts.py); the modules are
imported inside the hooks so that loading plugins never imports torch."""

from __future__ import annotations

from ganpipe import hookimpl


@hookimpl
def ganpipe_generators():
    from ganpipe.builtin.nets import DCGANGenerator
    from ganpipe.builtin.resnets import ResNetGenerator
    from ganpipe.builtin.stylenets import StyleGenerator

    return {"dcgan": DCGANGenerator, "resnet": ResNetGenerator, "stylegan": StyleGenerator}


@hookimpl
def ganpipe_discriminators():
    from ganpipe.builtin.nets import DCGANDiscriminator
    from ganpipe.builtin.resnets import SNGANDiscriminator
    from ganpipe.builtin.stylenets import ResidualDiscriminator

    return {
        "dcgan": DCGANDiscriminator,
        "resnet": ResidualDiscriminator,
        "sngan": SNGANDiscriminator,
    }


@hookimpl
def ganpipe_losses():
    from ganpipe.builtin.losses import LOSSES

    return dict(LOSSES)


@hookimpl
def ganpipe_regularizers():
    from ganpipe.builtin.regularizers import REGULARIZERS

    return dict(REGULARIZERS)


@hookimpl
def ganpipe_augmentations():
    from ganpipe.builtin.augment import AUGMENTATIONS

    return dict(AUGMENTATIONS)


@hookimpl
def ganpipe_style_encoders():
    from ganpipe.builtin.encoders import ENCODERS

    return dict(ENCODERS)


@hookimpl
def ganpipe_quality_filters():
    from ganpipe.builtin.filters import FILTERS

    return dict(FILTERS)


@hookimpl
def ganpipe_sources():
    from ganpipe.builtin.sources import SOURCES

    return dict(SOURCES)

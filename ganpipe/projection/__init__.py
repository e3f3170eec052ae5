"""Projection: the latent code that reproduces a real image, so a real asset can be varied,
mixed and interpolated like a generated one.

``codes`` is the ``.npz`` a projection writes and generation reads; ``loss`` what "reproduces"
means (pixels, discriminator features, style encoder); ``optimise`` the two recipes (z and
style weights for generators without a mapping network, W then W+ with noise for those with
one); ``ganpipe.stages.project`` the stage that reads images and writes results.
"""

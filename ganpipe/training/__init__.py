"""Training a style-conditioned GAN: the trainer, precision and distributed helpers."""

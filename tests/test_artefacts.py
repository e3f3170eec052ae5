"""Artefact figures on images built by hand, where the right answer is known."""

import math

import torch

from ganpipe.data.dataset import to_tensor
from ganpipe.data.demo import render
from ganpipe.stats.artefacts import (
    artefact_figures,
    checkerboard_energy,
    clipped_share,
    relative_artefacts,
    saturation,
)


def _from_unit(rgb: torch.Tensor) -> torch.Tensor:
    """Images given in [0, 1] as ganpipe's [-1, 1]."""
    return rgb * 2 - 1


def _checkerboard(size: int = 16, amplitude: float = 0.25) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    sign = ((yy + xx) % 2 * 2 - 1).float()
    return _from_unit((0.5 + amplitude * sign).expand(1, 3, size, size).clone())


def _demo_images(style: str, n: int = 12) -> torch.Tensor:
    import numpy as np

    return to_tensor(np.stack([np.asarray(render(style, i, 32)) for i in range(n)]))


def test_a_checkerboard_puts_all_its_power_on_the_nyquist_lines():
    assert checkerboard_energy(_checkerboard()).item() == 1.0
    # Vertical stripes of period 2 are the horizontal Nyquist frequency: also all of it.
    stripes = _from_unit(0.5 + 0.25 * (torch.arange(16) % 2 * 2 - 1).float().expand(1, 3, 16, 16))
    assert math.isclose(checkerboard_energy(stripes).item(), 1.0, rel_tol=1e-9)


def test_a_smooth_image_has_none_and_a_flat_one_scores_zero():
    ramp = torch.linspace(0, 1, 32).expand(1, 3, 32, 32)
    smooth = _from_unit(0.5 + 0.4 * torch.sin(ramp * math.pi * 2))
    assert checkerboard_energy(smooth).item() < 1e-3
    assert checkerboard_energy(torch.zeros(1, 3, 8, 8)).item() == 0.0


def test_adding_a_checkerboard_to_real_pictures_raises_the_figure_many_times():
    real = _demo_images("clouds")
    spoiled = (real + 0.1 * _checkerboard(32, 1.0)).clamp(-1, 1)
    ratio = relative_artefacts(spoiled, torch.zeros(12, dtype=torch.long), real,
                               torch.zeros(12, dtype=torch.long), 1)["checkerboard"][0]  # fmt: skip
    assert ratio > 5


def test_saturation_of_flat_colours():
    red = _from_unit(torch.tensor([1.0, 0.0, 0.0])[None, :, None, None].expand(1, 3, 4, 4))
    grey = torch.zeros(1, 3, 4, 4)
    pink = _from_unit(torch.tensor([1.0, 0.5, 0.5])[None, :, None, None].expand(1, 3, 4, 4))
    black = -torch.ones(1, 3, 4, 4)
    assert saturation(red).item() == 1.0
    assert saturation(grey).item() == 0.0
    assert math.isclose(saturation(pink).item(), 0.5, rel_tol=1e-6)
    assert saturation(black).item() == 0.0


def test_clipped_share_counts_pixels_at_either_end_of_8_bit():
    image = torch.zeros(1, 3, 4, 4)  # mid grey
    image[0, 0, 0, :] = 1.0  # one row with red at 255
    image[0, 2, 1, :2] = -1.0  # two pixels with blue at 0
    image[0, :, 2, :] = 0.995  # 254.4 rounds to 254: not clipped
    assert clipped_share(image).item() == 6 / 16


def test_a_copy_of_the_data_is_one_on_every_figure():
    real = torch.cat([_demo_images("clouds"), _demo_images("dots")])
    styles = torch.arange(2).repeat_interleave(12)
    ratios = relative_artefacts(real, styles, real, styles, 2)
    for name, values in ratios.items():
        assert values == [1.0, 1.0], name


def test_a_flat_oversaturated_style_shows_in_saturation_and_clipping():
    real = _demo_images("clouds")
    flat = _from_unit(torch.tensor([0.0, 0.2, 1.0])[None, :, None, None].expand(12, 3, 32, 32))
    ratios = relative_artefacts(flat, torch.zeros(12, dtype=torch.long), real,
                                torch.zeros(12, dtype=torch.long), 1)  # fmt: skip
    figures = artefact_figures(flat)
    assert figures["saturation"] == 1.0 and figures["clipped"] == 1.0
    assert ratios["saturation"][0] > 1.2 and ratios["clipped"][0] > 1.2


def test_a_style_without_samples_is_not_a_number():
    real = _demo_images("dots", 4)
    ratios = relative_artefacts(real, torch.zeros(4, dtype=torch.long), real,
                                torch.ones(4, dtype=torch.long), 2)  # fmt: skip
    assert all(math.isnan(v) for values in ratios.values() for v in values)

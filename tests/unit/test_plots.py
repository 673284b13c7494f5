"""course_utils.plots: image grids from the layouts the notebooks hold."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_utils import plots  # noqa: E402


def test_to_display_undoes_normalisation_and_transposes():
    image = torch.rand(3, 4, 5)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    normalised = (image - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    shown = plots.to_display(normalised, mean, std)
    assert shown.shape == (4, 5, 3)
    np.testing.assert_allclose(shown, image.permute(1, 2, 0).numpy(), atol=1e-6)


def test_to_display_keeps_uint8_and_numpy_hwc_and_clips_floats():
    hwc = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    assert plots.to_display(hwc).dtype == np.uint8 and plots.to_display(hwc).shape == (6, 7, 3)
    chw = torch.from_numpy(hwc).permute(2, 0, 1)
    np.testing.assert_array_equal(plots.to_display(chw), hwc)
    assert plots.to_display(torch.full((1, 2, 2), 3.0)).max() == 1.0  # grey, clipped
    with pytest.raises(ValueError, match="one"):
        plots.to_display(torch.zeros(2, 3, 4, 4))


def test_show_images_titles_colours_and_empty_slots():
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    titles = [f"img {i}" for i in range(10)]
    colors = ["green" if i % 2 else "red" for i in range(10)]
    fig = plots.show_images(images, titles, colors=colors, ncols=4, show=False)
    axes = fig.axes
    assert len(axes) == 12  # 3 rows of 4, two empty
    assert [ax.get_title() for ax in axes[:10]] == titles and axes[10].get_title() == ""
    assert axes[1].title.get_color() == "green" and axes[0].title.get_color() == "red"
    assert len(axes[0].images) == 1 and not axes[11].images
    plt.close(fig)


def test_show_images_says_what_does_not_match():
    with pytest.raises(ValueError, match="3 images but 2 titles"):
        plots.show_images(torch.zeros(3, 3, 4, 4), ["a", "b"], show=False)
    with pytest.raises(ValueError, match="no images"):
        plots.show_images(torch.zeros(0, 3, 4, 4), show=False)

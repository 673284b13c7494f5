"""Pictures the notebooks share: a grid of images with a title each.

:func:`show_images` takes what the notebooks hold (uint8 or float image tensors in
``(N, C, H, W)`` layout, normalised batches, or NumPy ``(N, H, W, C)`` arrays such as
``CIFAR10.data``) and draws them in a grid, each with an optional title and title colour
(green/red for right/wrong predictions).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = ["show_images", "to_display"]


def to_display(
    image: torch.Tensor | np.ndarray,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """One image as an ``(H, W, C)`` array ``imshow`` can draw.

    A tensor is taken as ``(C, H, W)``, a NumPy array as ``(H, W, C)``. With ``mean``
    and ``std`` (the ``Normalize`` that was applied) the normalisation is undone first;
    float images are clipped to ``[0, 1]``, uint8 images are drawn as they are.
    """
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu()
        if array.ndim != 3:
            raise ValueError(f"expected one (C, H, W) image tensor, got shape {tuple(array.shape)}")
        array = array.permute(1, 2, 0).numpy()
    else:
        array = np.asarray(image)
    if mean is not None or std is not None:
        channels = array.shape[-1]
        m = np.asarray(mean if mean is not None else [0.0] * channels, dtype=np.float32)
        s = np.asarray(std if std is not None else [1.0] * channels, dtype=np.float32)
        array = array.astype(np.float32) * s + m
    if array.dtype != np.uint8:
        array = np.clip(array.astype(np.float32), 0.0, 1.0)
    return array[..., 0] if array.shape[-1] == 1 else array


def show_images(
    images: torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    colors: Sequence[str] | None = None,
    ncols: int = 8,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    size: float = 1.5,
    show: bool = True,
) -> Figure:
    """Draw ``images`` in a grid of ``ncols`` columns, each with its title (and title colour).

    ``mean``/``std`` undo a ``Normalize`` before drawing (see :func:`to_display`). Returns
    the figure; ``show=False`` leaves it open instead of calling ``plt.show()``.
    """
    count = len(images)
    if count == 0:
        raise ValueError("no images to show")
    for name, values in (("titles", titles), ("colors", colors)):
        if values is not None and len(values) != count:
            raise ValueError(f"{count} images but {len(values)} {name}")
    ncols = max(1, min(ncols, count))
    nrows = (count + ncols - 1) // ncols
    title_space = 0.25 * max((t.count("\n") + 1 for t in titles), default=0) if titles else 0.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + title_space) * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in zip(range(count), axes.flat, strict=False):  # the last row may have empty slots
        shown = to_display(images[i], mean, std)
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8, color="black" if colors is None else colors[i])
    fig.tight_layout()
    if show:
        plt.show()
    return fig

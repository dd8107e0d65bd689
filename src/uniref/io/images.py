"""Reading images from whatever a user holds: a path, a PIL image, a numpy array or a tensor.

Every input becomes one thing: a ``[H, W, 3]`` uint8 RGB numpy array, the form the official pipeline
reads with PIL (spec 2.1). Errors name the file (for paths) or the shape and dtype (for arrays).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

__all__ = ["ImageInput", "ImageReadError", "load_image", "image_size", "to_uint8_rgb"]

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, "torch.Tensor"]


class ImageReadError(ValueError):
    """An image file that exists but cannot be decoded, or an array that is not an image."""


def _open_image_file(path: Path) -> Image.Image:
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"expected an image file, got a folder: {path}")
    try:
        with Image.open(path) as image:
            # load() forces the full decode here, so truncated files fail now and name the file.
            image.load()
            # detectron2's read_image applies the EXIF orientation; do the same for camera JPEGs.
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except UnidentifiedImageError as error:
        raise ImageReadError(f"not a readable image file: {path}") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"corrupt or truncated image file: {path} ({error})") from error


def _from_pil(image: Image.Image) -> np.ndarray:
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError) as error:
        raise ImageReadError(f"cannot convert PIL image (mode {image.mode}, size {image.size}) to RGB: {error}") from error


def to_uint8_rgb(array: np.ndarray, *, what: str = "image array") -> np.ndarray:
    """Convert an ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` array to ``[H, W, 3]`` uint8.

    Integer arrays must hold 0..255. Float arrays must hold 0..1 (they are scaled by 255 and rounded).
    A fourth (alpha) channel is dropped. Grey images are repeated over the three channels.
    """
    array = np.asarray(array)
    shape = tuple(array.shape)
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        pass
    elif array.ndim == 2:
        array = array[:, :, None]
    else:
        hint = ""
        if array.ndim == 3 and array.shape[0] in (1, 3, 4):
            hint = " (it looks channel-first; numpy images must be [H, W, 3])"
        raise ImageReadError(f"{what} must have shape [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]; got {shape}{hint}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(f"{what} is empty: shape {shape}")
    if array.dtype == np.bool_:
        raise ImageReadError(f"{what} is boolean (shape {shape}); a mask, not an image")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageReadError(f"{what} (shape {shape}) contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ImageReadError(
                f"float {what} must hold values in 0..1, got {low:.4g}..{high:.4g} (shape {shape}); "
                "pass uint8 for 0..255 images"
            )
        array = np.rint(array * 255.0).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer):
        if array.dtype != np.uint8:
            low, high = int(array.min()), int(array.max())
            if low < 0 or high > 255:
                raise ImageReadError(f"integer {what} must hold values in 0..255, got {low}..{high} (shape {shape})")
            array = array.astype(np.uint8)
    else:
        raise ImageReadError(f"{what} has unsupported dtype {array.dtype} (shape {shape})")
    channels = array.shape[-1]
    if channels == 1:
        array = np.repeat(array, 3, axis=2)
    elif channels == 4:
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


def _from_tensor(tensor: Any) -> np.ndarray:
    shape = tuple(tensor.shape)
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.float()  # numpy has no bfloat16
    array = tensor.numpy()
    if array.ndim == 3:
        # Torch images are channel-first by convention, so an ambiguous [3, H, 3] is read as [C, H, W].
        if array.shape[0] in (1, 3):
            array = np.moveaxis(array, 0, -1)
        elif array.shape[-1] not in (1, 3, 4):
            raise ImageReadError(f"image tensor must have shape [3, H, W] or [H, W, 3]; got {shape}")
    elif array.ndim != 2:
        raise ImageReadError(f"image tensor must have shape [3, H, W], [H, W, 3] or [H, W]; got {shape}")
    return to_uint8_rgb(array, what=f"image tensor (shape {shape})")


def load_image(image: ImageInput) -> np.ndarray:
    """Read an image into a ``[H, W, 3]`` uint8 RGB array.

    Args:
        image: a path (any format PIL reads; EXIF orientation applied), a PIL image (any mode), a numpy
            array (``[H, W, 3]``/``[H, W]``/``[H, W, 4]``, uint8 0..255 or float 0..1) or a torch tensor
            (``[3, H, W]`` or ``[H, W, 3]`` or ``[H, W]``, uint8 or float 0..1).

    Returns:
        ``[H, W, 3]`` uint8, C-contiguous, never a view of the caller's data.

    Raises:
        FileNotFoundError: the path does not exist (the message names it).
        ImageReadError: the file cannot be decoded, or the array has a wrong shape, dtype or range.
        TypeError: an unsupported input type.
    """
    if isinstance(image, (str, os.PathLike)):
        return np.asarray(_open_image_file(Path(image)), dtype=np.uint8).copy()
    if isinstance(image, Image.Image):
        return _from_pil(image)
    if isinstance(image, np.ndarray):
        out = to_uint8_rgb(image)
        return out.copy() if np.shares_memory(out, image) else out
    if type(image).__module__.startswith("torch") and hasattr(image, "detach"):
        return _from_tensor(image)
    raise TypeError(
        f"cannot read an image from {type(image).__name__}; pass a path, a PIL image, a numpy array or a tensor"
    )


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file, read from its header only."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except UnidentifiedImageError as error:
        raise ImageReadError(f"not a readable image file: {path}") from error
    return height, width

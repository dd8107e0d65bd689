"""Masks in and out: DAVIS palette PNGs (label maps), binary PNGs and arrays.

Two in-memory forms are used throughout the package:

* a **label map**: ``[H, W]`` uint8, 0 = background, 1..255 = object ids (DAVIS layout);
* a **binary mask**: ``[H, W]`` bool, one object.

Palette PNGs are written with the DAVIS palette generated in :mod:`uniref.io.palette`; binary PNGs are
written as mode "L" with values 0/255 (the Ref-YouTube-VOS submission layout). Every writer is atomic.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_path
from .palette import davis_palette, davis_palette_flat

if TYPE_CHECKING:
    import torch

__all__ = [
    "MaskError",
    "MaskInput",
    "MaskSizeError",
    "check_label_ids",
    "labels_to_masks",
    "load_binary_mask",
    "load_label_map",
    "masks_to_labels",
    "read_png_indices",
    "save_binary_png",
    "save_label_png",
    "validate_mask_size",
]

MaskInput = Union[str, os.PathLike, Image.Image, np.ndarray, "torch.Tensor"]


class MaskError(ValueError):
    """A mask that cannot be read or does not fit (wrong values, wrong shape)."""


class MaskSizeError(MaskError):
    """A mask whose size differs from the frame it belongs to."""


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    shape = getattr(source, "shape", None)
    if shape is not None:
        return f"{type(source).__name__} of shape {tuple(shape)}"
    if isinstance(source, Image.Image):
        return f"PIL image (mode {source.mode}, size {source.size})"
    return type(source).__name__


def _open_png(path: Path) -> Image.Image:
    if not path.exists():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except UnidentifiedImageError as error:
        raise MaskError(f"not a readable mask image: {path}") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise MaskError(f"corrupt or truncated mask image: {path} ({error})") from error
    return image


def _rgb_to_ids(rgb: np.ndarray, what: str) -> np.ndarray:
    """Map an RGB rendering of the DAVIS palette back to ids; grey images pass through."""
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0]
    palette = davis_palette().astype(np.int64)
    codes = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    lookup = dict(zip(codes.tolist(), range(256)))
    flat = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    values, inverse = np.unique(flat, return_inverse=True)
    ids = np.empty(values.shape, dtype=np.uint8)
    for k, value in enumerate(values.tolist()):
        if value not in lookup:
            color = ((value >> 16) & 255, (value >> 8) & 255, value & 255)
            raise MaskError(
                f"{what}: colour {color} is not a DAVIS palette colour; save masks as palette ('P') "
                "or greyscale PNGs, or pass an array of ids"
            )
        ids[k] = lookup[value]
    return ids[inverse].reshape(flat.shape)


def _pil_to_values(image: Image.Image, what: str) -> np.ndarray:
    """The per-pixel values of a mask image: palette indices for 'P', grey levels otherwise."""
    if image.mode == "P":
        return np.asarray(image, dtype=np.uint8).copy()
    if image.mode in ("L", "1"):
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image)
        return values.copy()
    if image.mode in ("RGB", "RGBA", "LA", "PA"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        return _rgb_to_ids(rgb, what)
    raise MaskError(f"{what}: unsupported image mode {image.mode!r} for a mask")


def read_png_indices(path: str | os.PathLike) -> np.ndarray:
    """The raw per-pixel values of a mask PNG: palette indices of a "P" PNG, grey levels of an "L" one.

    Returns:
        ``[H, W]`` uint8.
    """
    path = Path(path)
    with _open_png(path) as image:
        values = _pil_to_values(image, str(path))
    return _as_label_map(values, str(path))


def check_label_ids(labels: np.ndarray, *, what: str = "label map", max_id: int = 255) -> None:
    """Raise :class:`MaskError` when a label map holds ids outside ``0..max_id``."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return
    if not np.issubdtype(labels.dtype, np.integer):
        raise MaskError(f"{what}: object ids must be integers, got dtype {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high > max_id:
        raise MaskError(f"{what}: palette ids out of range: values {low}..{high}, allowed 0..{max_id}")


def _as_label_map(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim == 3 and values.shape[0] == 1:
        values = values[0]
    elif values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim != 2:
        raise MaskError(f"{what}: a mask must be [H, W]; got shape {tuple(values.shape)}")
    if values.dtype == np.bool_:
        return values.astype(np.uint8)
    if np.issubdtype(values.dtype, np.floating):
        if not np.isfinite(values).all():
            raise MaskError(f"{what}: mask holds NaN or infinite values")
        if values.min() >= 0.0 and values.max() <= 1.0:
            # A probability map: the package binarizes at 0.5 everywhere (spec 9.6).
            return (values > 0.5).astype(np.uint8)
        if not np.array_equal(values, np.round(values)):
            raise MaskError(f"{what}: float mask must hold probabilities in 0..1 or integer ids")
        values = values.astype(np.int64)
    check_label_ids(values, what=what)
    return values.astype(np.uint8)


def _to_numpy(mask: Any) -> np.ndarray:
    if isinstance(mask, np.ndarray):
        return mask
    if type(mask).__module__.startswith("torch") and hasattr(mask, "detach"):
        tensor = mask.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        return tensor.numpy()
    raise TypeError(f"cannot read a mask from {type(mask).__name__}; pass a path, a PIL image, an array or a tensor")


def load_label_map(mask: MaskInput) -> np.ndarray:
    """Read a multi-object label map.

    Args:
        mask: a DAVIS palette PNG (indices are the ids), a greyscale PNG (grey levels are the ids; a
            0/255 binary PNG gives id 1), an RGB PNG drawn with the DAVIS palette, a PIL image, or an
            ``[H, W]`` array/tensor (integers = ids, bool = one object with id 1, floats in 0..1 =
            a probability map binarized at 0.5).

    Returns:
        ``[H, W]`` uint8 label map.

    Raises:
        FileNotFoundError: missing file. MaskError: unreadable file, wrong shape, ids outside 0..255.
    """
    what = _describe(mask)
    if isinstance(mask, (str, os.PathLike)):
        path = Path(mask)
        with _open_png(path) as image:
            mode = image.mode
            values = _pil_to_values(image, str(path))
    elif isinstance(mask, Image.Image):
        mode = mask.mode
        values = _pil_to_values(mask, what)
    else:
        mode = None
        values = _to_numpy(mask)
    if mode is not None and mode != "P":
        unique = np.unique(values)
        # A binary PNG stored as 0/255 is one object, not object 255.
        if unique.size <= 2 and set(unique.tolist()) <= {0, 255}:
            values = (values > 0).astype(np.uint8)
    return _as_label_map(values, what)


def load_binary_mask(mask: MaskInput) -> np.ndarray:
    """Read a one-object mask: every non-zero pixel is the object.

    Args:
        mask: a PNG (palette or greyscale or RGB: any non-zero value/colour is foreground), a PIL image,
            or an ``[H, W]`` array/tensor (bool, integers: non-zero; floats in 0..1: > 0.5).

    Returns:
        ``[H, W]`` bool.
    """
    what = _describe(mask)
    if isinstance(mask, (str, os.PathLike)):
        path = Path(mask)
        with _open_png(path) as image:
            values = _binary_values(image, str(path))
        return values
    if isinstance(mask, Image.Image):
        return _binary_values(mask, what)
    values = _to_numpy(mask)
    if values.ndim == 3 and 1 in (values.shape[0], values.shape[-1]):
        values = values.reshape(values.shape[1:] if values.shape[0] == 1 else values.shape[:2])
    if values.ndim != 2:
        raise MaskError(f"{what}: a mask must be [H, W]; got shape {tuple(values.shape)}")
    if np.issubdtype(values.dtype, np.floating):
        if not np.isfinite(values).all():
            raise MaskError(f"{what}: mask holds NaN or infinite values")
        if values.min() < 0.0 or values.max() > 1.0:
            return values != 0
        return values > 0.5
    return values != 0


def _binary_values(image: Image.Image, what: str) -> np.ndarray:
    if image.mode == "P":
        return np.asarray(image) != 0
    if image.mode in ("RGB", "RGBA"):
        return (np.asarray(image.convert("RGB")) != 0).any(axis=-1)
    if image.mode in ("L", "1", "I", "I;16", "I;16B", "I;16L", "F", "LA", "PA"):
        return np.asarray(image.convert("L") if image.mode in ("1", "LA", "PA") else image) != 0
    raise MaskError(f"{what}: unsupported image mode {image.mode!r} for a mask")


def validate_mask_size(
    mask: np.ndarray, frame_size: tuple[int, int], *, what: str = "mask", frame_what: str = "frame"
) -> None:
    """Raise :class:`MaskSizeError` naming both sizes when ``mask.shape[:2] != frame_size``.

    Args:
        mask: ``[H, W]`` array.
        frame_size: ``(height, width)`` of the frame.
        what / frame_what: names used in the message (e.g. the mask file and the frame file).
    """
    mask_hw = tuple(int(v) for v in np.shape(mask)[:2])
    frame_hw = tuple(int(v) for v in frame_size)
    if mask_hw != frame_hw:
        raise MaskSizeError(
            f"{what} is {mask_hw[0]}x{mask_hw[1]} (HxW) but {frame_what} is {frame_hw[0]}x{frame_hw[1]}"
        )


def labels_to_masks(labels: np.ndarray, ids: list[int] | None = None) -> dict[int, np.ndarray]:
    """Split a label map into ``{id: [H, W] bool}`` (ids present, or the given ones)."""
    labels = np.asarray(labels)
    if ids is None:
        ids = [int(v) for v in np.unique(labels) if v != 0]
    return {int(i): labels == i for i in ids}


def masks_to_labels(masks: Mapping[int, np.ndarray], size: tuple[int, int] | None = None) -> np.ndarray:
    """Paint ``{id: [H, W] bool}`` into one ``[H, W]`` uint8 label map; later ids win on overlap."""
    if size is None:
        if not masks:
            raise MaskError("cannot build a label map from no masks without a size")
        size = tuple(np.shape(next(iter(masks.values())))[:2])
    labels = np.zeros(size, dtype=np.uint8)
    for obj_id, mask in masks.items():
        if not 0 < int(obj_id) <= 255:
            raise MaskError(f"palette ids out of range: object id {obj_id}, allowed 1..255")
        mask = np.asarray(mask)
        validate_mask_size(mask, size, what=f"mask of object {obj_id}", frame_what="the label map")
        labels[mask.astype(bool)] = int(obj_id)
    return labels


def save_label_png(path: str | os.PathLike, labels: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write a label map as a DAVIS palette PNG, atomically.

    Args:
        labels: ``[H, W]`` integer ids in 0..255 (bool is accepted as id 1).

    Raises:
        MaskError: ids out of range or a wrong shape. FileExistsError: the file exists and not ``overwrite``.
    """
    labels = np.asarray(labels)
    if labels.dtype == np.bool_:
        labels = labels.astype(np.uint8)
    if labels.ndim != 2:
        raise MaskError(f"label map for {path} must be [H, W]; got shape {tuple(labels.shape)}")
    check_label_ids(labels, what=f"label map for {path}")
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))
    image.putpalette(davis_palette_flat())
    with atomic_path(path, overwrite=overwrite) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def save_binary_png(path: str | os.PathLike, mask: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write one object's mask as a mode "L" PNG holding 0 and 255, atomically.

    Args:
        mask: ``[H, W]``; every non-zero value is foreground.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise MaskError(f"binary mask for {path} must be [H, W]; got shape {tuple(mask.shape)}")
    image = Image.fromarray(np.where(mask != 0, 255, 0).astype(np.uint8))
    with atomic_path(path, overwrite=overwrite) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)

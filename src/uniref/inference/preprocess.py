"""Test-time resizing of images and masks, exactly as the official mappers do it.

Images are resized with PIL bilinear (detectron2 ``ResizeShortestEdge``), masks with PIL nearest.
Normalisation and padding to a multiple of 32 happen inside the model (``UniRef.normalize`` /
``UniRef.pad_batch``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def predictor_model(model):
    """The object the predictors drive: ``model`` itself, or the adapter a model with another input pipeline
    (UniRef-SAM) returns from its ``predictor_adapter()`` hook. UniRef has no such hook."""
    hook = getattr(model, "predictor_adapter", None)
    return hook() if callable(hook) else model


def shortest_edge_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """Output ``(H, W)`` of detectron2's ``ResizeShortestEdge`` for one short-side choice."""
    scale = short / min(height, width)
    if height < width:
        new_h, new_w = float(short), scale * width
    else:
        new_h, new_w = scale * height, float(short)
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[h, w, 3]`` uint8, PIL bilinear (a no-op at the same size)."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def resize_mask_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` integer/bool mask -> ``[h, w]`` of the same dtype, PIL nearest."""
    h, w = size
    if mask.shape[:2] == (h, w):
        return mask
    dtype = mask.dtype
    img = Image.fromarray(mask.astype(np.uint8) if dtype == bool else mask)
    return np.asarray(img.resize((w, h), Image.NEAREST)).astype(dtype)


@dataclass
class PreparedImage:
    """One image resized for the network.

    Attributes:
        tensor: ``[3, h, w]`` normalised float on the model device (not padded).
        size: ``(h, w)`` after resizing.
        original_size: ``(H, W)`` as given.
    """

    tensor: Tensor
    size: tuple[int, int]
    original_size: tuple[int, int]


def prepare_image(model, image: np.ndarray, short: int, max_size: int) -> PreparedImage:
    """Resize ``[H, W, 3]`` uint8 RGB and normalise it with the model's statistics."""
    h0, w0 = image.shape[:2]
    size = shortest_edge_size(h0, w0, short, max_size)
    resized = resize_image(image, size)
    # PIL hands back a read-only buffer; copy once so torch owns writable memory
    t = torch.from_numpy(np.array(resized, copy=True)).permute(2, 0, 1)[None].to(model.device)
    return PreparedImage(model.normalize(t)[0], size, (h0, w0))


def pad_mask(mask: np.ndarray | Tensor, padded_size: tuple[int, int], device: torch.device) -> Tensor:
    """``[h, w]`` 0/1 mask -> ``[1, 1, Hp, Wp]`` float, zero in the padding."""
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask, device=device).float()
    out = torch.zeros((1, 1, *padded_size), device=device)
    out[0, 0, : m.shape[0], : m.shape[1]] = m
    return out

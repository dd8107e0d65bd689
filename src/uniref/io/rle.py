"""COCO run-length encoding (pycocotools) and COCO-style result files.

pycocotools runs over the mask in column-major (Fortran) order; a C-ordered array must be converted,
or the encoding is of the transposed mask. ``counts`` is returned as ``str`` so results are JSON-ready.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from .atomic import atomic_open

__all__ = ["decode_rle", "encode_rle", "mask_to_coco_result", "rle_area", "rle_to_bbox", "write_coco_results"]


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode one ``[H, W]`` mask (non-zero = foreground) as compressed COCO RLE.

    Returns:
        ``{"size": [H, W], "counts": str}``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"RLE encodes one [H, W] mask; got shape {tuple(mask.shape)}")
    fortran = np.asfortranarray((mask != 0).astype(np.uint8)[:, :, None])
    rle = mask_utils.encode(fortran)[0]
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _to_pycocotools(rle: Mapping[str, Any]) -> dict[str, Any]:
    if "size" not in rle or "counts" not in rle:
        raise ValueError(f"an RLE needs 'size' and 'counts'; got keys {sorted(rle)}")
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        # Uncompressed RLE (as in COCO crowd annotations): compress it first.
        return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [height, width], "counts": counts}


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (compressed ``str``/``bytes`` counts or an uncompressed list) into ``[H, W]`` bool."""
    with warnings.catch_warnings():
        # pycocotools' own numpy-2 copy-keyword deprecation, not something a caller can act on.
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = mask_utils.decode(_to_pycocotools(rle))
    return decoded.astype(bool)


def rle_area(rle: Mapping[str, Any]) -> int:
    """Number of foreground pixels of an RLE."""
    return int(mask_utils.area(_to_pycocotools(rle)))


def rle_to_bbox(rle: Mapping[str, Any]) -> list[float]:
    """The ``[x, y, w, h]`` box of an RLE (zeros for an empty mask)."""
    return [float(v) for v in mask_utils.toBbox(_to_pycocotools(rle))]


def mask_to_coco_result(
    mask: np.ndarray,
    *,
    image_id: int | str,
    score: float,
    category_id: int = 1,
    bbox: Sequence[float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One COCO results entry: ``image_id``, ``category_id``, ``segmentation`` (RLE), ``score``, ``bbox``.

    Args:
        mask: ``[H, W]`` mask.
        bbox: ``[x, y, w, h]``; the mask's box when not given.
        extra: more JSON-serialisable fields (e.g. ``sent_id``).
    """
    rle = encode_rle(mask)
    result = {
        "image_id": image_id,
        "category_id": int(category_id),
        "segmentation": rle,
        "score": float(score),
        "bbox": [float(v) for v in bbox] if bbox is not None else rle_to_bbox(rle),
    }
    result.update(extra)
    return result


def write_coco_results(
    path: str | os.PathLike, results: Iterable[Mapping[str, Any]], *, overwrite: bool = False
) -> Path:
    """Write a list of COCO result entries as JSON, atomically.

    Raises:
        TypeError: an entry that JSON cannot hold (the temporary file is removed).
    """
    entries = [dict(entry) for entry in results]
    for entry in entries:
        segmentation = entry.get("segmentation")
        if isinstance(segmentation, Mapping) and isinstance(segmentation.get("counts"), bytes):
            entry["segmentation"] = dict(segmentation, counts=segmentation["counts"].decode("ascii"))
    text = json.dumps(entries)
    with atomic_open(path, "w", overwrite=overwrite) as handle:
        handle.write(text)
    return Path(path)

"""Typed results of the predictors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageResult:
    """RIS / FSS result at the original image resolution.

    Attributes:
        mask: ``[H, W]`` bool.
        score: confidence of the chosen query (sigmoid of its class logit).
        box: ``[4]`` xyxy in pixels of the original image, clipped.
        query: index of the chosen query.
        box_empty: True when the box is empty after clipping (the official post-processing then drops the
            prediction; we keep the mask and flag it).
    """

    mask: np.ndarray
    score: float
    box: np.ndarray
    query: int
    box_empty: bool = False


@dataclass
class FrameResult:
    """One video frame.

    Attributes:
        frame_idx: index of the frame in the video.
        obj_ids: the objects reported on this frame (those started at or before it), ascending.
        masks: ``[N, H, W]`` bool, one per entry of ``obj_ids`` (objects may overlap for RVOS).
        scores: ``[N]`` confidence of each object's chosen query (1.0 where a given mask was used).
        label_map: ``[H, W]`` uint8, 0 = background, otherwise the object id.
        probabilities: ``[N, H, W]`` float32 soft masks, when asked for.
    """

    frame_idx: int
    obj_ids: list[int]
    masks: np.ndarray
    scores: np.ndarray
    label_map: np.ndarray
    probabilities: np.ndarray | None = None
    texts: dict[int, str] = field(default_factory=dict)

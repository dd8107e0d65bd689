"""Video object segmentation (masks) and referring video object segmentation (sentences).

Usage, in the spirit of SAM 2::

    predictor = VideoPredictor(model, preset="davis")
    state = predictor.init_state("video.mp4")
    predictor.add_mask(state, frame_idx=0, obj_id=1, mask=first_mask)
    predictor.add_text(state, obj_id=2, text="the dog jumping")    # or sentences instead of masks
    for result in predictor.propagate(state):
        result.frame_idx, result.obj_ids, result.masks, result.label_map

or, for live video, ``predictor.step(frame, new_masks={1: mask})`` frame after frame (nothing of past frames
is kept but the two references per object).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uniref.inference.preprocess import predictor_model
from uniref.inference.results import FrameResult
from uniref.inference.video_engine import ENGINES, RVOS_MODES, EngineOptions, FrameTracker
from uniref.io.images import load_image
from uniref.io.masks import load_binary_mask, load_label_map

# score thresholds of the official VOS evaluation, per benchmark (spec 9.3)
VOS_PRESETS: dict[str, float] = {"davis": 0.3, "ytvos": 0.4, "lvos": 0.5, "mose": 0.4}


@dataclass
class VideoState:
    """Inputs of one video: the source (decoded lazily) and the prompts per frame / object."""

    video: Any
    masks: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)  # frame -> {obj_id: [H, W] bool}
    texts: dict[int, str] = field(default_factory=dict)  # obj_id -> sentence


class VideoPredictor:
    """Online VOS / RVOS over a video, with constant memory.

    Args:
        model: a :class:`~uniref.modeling.uniref.UniRef` or a :class:`~uniref.modeling.sam.UniRefSAM` (whose
            ``predictor_adapter`` hook gives the same interface; its IoU prediction is the thresholded score).
        engine: ``"fast"`` (one backbone pass per frame, objects batched, top-1 mask only) or ``"reference"``
            (the official structure, for parity and benchmarks); both give the same label maps.
        preset: a VOS benchmark whose score threshold to use (``davis`` 0.3, ``ytvos`` 0.4, ``lvos`` 0.5,
            ``mose`` 0.4); ``score_threshold`` overrides it.
        rvos_mode: ``"propagate"`` (Ref-YouTube-VOS: language, then language plus first/previous mask
            references once a confident mask exists) or ``"per_frame"`` (Ref-DAVIS: language only, every
            frame independently, objects merged by soft aggregation).
        keep_probabilities: also return soft masks per object.
    """

    def __init__(
        self,
        model,
        *,
        engine: str = "fast",
        preset: str | None = "davis",
        score_threshold: float | None = None,
        rvos_mode: str = "propagate",
        rvos_score_threshold: float = 0.3,
        keep_probabilities: bool = False,
    ):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
        if rvos_mode not in RVOS_MODES:
            raise ValueError(f"rvos_mode must be one of {RVOS_MODES}, not {rvos_mode!r}")
        if preset is not None and preset not in VOS_PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known presets: {sorted(VOS_PRESETS)}")
        threshold = score_threshold if score_threshold is not None else VOS_PRESETS.get(preset or "davis")
        self.model = predictor_model(model).eval()
        self.options = EngineOptions(engine, threshold, rvos_score_threshold, rvos_mode, keep_probabilities)
        self._tokenizer = None
        self._stream: FrameTracker | None = None
        self._stream_index = 0

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from uniref.inference.text import TextTokenizer

            self._tokenizer = TextTokenizer(self.model)
        return self._tokenizer

    # ------------------------------------------------------------------ offline
    def init_state(self, video: Any) -> VideoState:
        """Open a video (file, frame folder or iterable of ``[H, W, 3]`` arrays); nothing is decoded yet."""
        from uniref.io.video import open_video

        return VideoState(open_video(video))

    def add_mask(self, state: VideoState, frame_idx: int, obj_id: int, mask: Any) -> None:
        """Give object ``obj_id`` (1..255) by its mask on the frame where it first appears."""
        if frame_idx < 0:
            raise ValueError(f"frame index must be >= 0; got {frame_idx}")
        state.masks.setdefault(int(frame_idx), {})[int(obj_id)] = load_binary_mask(mask)

    def add_label_map(self, state: VideoState, frame_idx: int, labels: Any) -> list[int]:
        """Give every object of a DAVIS-style label map (palette PNG, array) at ``frame_idx``; returns the ids."""
        lab = load_label_map(labels)
        ids = [int(i) for i in np.unique(lab) if i != 0]
        if not ids:
            raise ValueError(f"label map for frame {frame_idx} holds no object (all background)")
        for i in ids:
            self.add_mask(state, frame_idx, i, lab == i)
        return ids

    def add_text(self, state: VideoState, obj_id: int, text: str) -> None:
        """Give object ``obj_id`` by a sentence (RVOS); it is searched from the first frame on."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"empty text for object {obj_id}")
        state.texts[int(obj_id)] = text

    def propagate(self, state: VideoState, *, start_frame: int = 0) -> Iterator[FrameResult]:
        """Yield a :class:`FrameResult` for every frame from ``start_frame`` on, decoding frames lazily."""
        if not state.masks and not state.texts:
            raise ValueError("no object to segment: call add_mask or add_text first")
        tracker = FrameTracker(self.model, self.options, self.tokenizer if state.texts else None)
        for obj_id, text in sorted(state.texts.items()):
            tracker.add_text(obj_id, text)
        last = -1
        for frame_idx, frame in state.video:
            last = frame_idx
            if frame_idx < start_frame:
                continue
            yield tracker.step(frame_idx, frame, state.masks.get(frame_idx))
        missing = [f for f in state.masks if f > last]
        if missing:
            raise ValueError(f"masks were given for frame(s) {sorted(missing)} but the video has {last + 1} frames")

    # ------------------------------------------------------------------ streaming
    def step(self, frame: Any, new_masks: dict[int, Any] | None = None, *, texts: dict[int, str] | None = None) -> FrameResult:
        """Process the next frame of a live stream. ``new_masks`` / ``texts`` add objects at this frame."""
        if self._stream is None:
            self._stream = FrameTracker(self.model, self.options, self.tokenizer if texts else None)
            self._stream_index = 0
        if texts:
            if self._stream.tokenizer is None:
                self._stream.tokenizer = self.tokenizer
            for obj_id, text in texts.items():
                self._stream.add_text(int(obj_id), text)
        masks = {int(k): load_binary_mask(v) for k, v in (new_masks or {}).items()}
        result = self._stream.step(self._stream_index, load_image(frame), masks)
        self._stream_index += 1
        return result

    def reset(self) -> None:
        """Forget the live stream's objects (start a new stream)."""
        self._stream = None
        self._stream_index = 0

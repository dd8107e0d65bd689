"""Predictors for the four tasks, their typed results, and writers for the output layouts."""

from uniref.inference.image_predictor import ImagePredictor
from uniref.inference.results import FrameResult, ImageResult
from uniref.inference.video_predictor import VOS_PRESETS, VideoPredictor, VideoState

__all__ = ["VOS_PRESETS", "FrameResult", "ImagePredictor", "ImageResult", "VideoPredictor", "VideoState"]

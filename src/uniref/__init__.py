"""UniRef++ in pure PyTorch: referring image, few-shot, video object and referring video object segmentation."""

from uniref.checkpoint import CheckpointError, load_checkpoint
from uniref.configs import ModelConfig, available_configs, get_config
from uniref.inference import FrameResult, ImagePredictor, ImageResult, VideoPredictor, VideoState
from uniref.modeling.build import build_model, build_model_from_checkpoint

__all__ = [
    "CheckpointError",
    "FrameResult",
    "ImagePredictor",
    "ImageResult",
    "ModelConfig",
    "VideoPredictor",
    "VideoState",
    "available_configs",
    "build_model",
    "build_model_from_checkpoint",
    "get_config",
    "load_checkpoint",
]
__version__ = "0.1.0"

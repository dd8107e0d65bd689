"""UniRef-SAM: UniFusion plugged into Segment Anything (spec section 12), ViT-B / ViT-L / ViT-H."""

from uniref.modeling.sam.checkpoint import (
    SAM_OFFICIAL_PREFIXES,
    SamLoadReport,
    load_sam_weights,
    load_uniref_sam_checkpoint,
    sam_official_to_ours,
    sam_ours_to_official,
    to_official_sam_state_dict,
)
from uniref.modeling.sam.config import (
    SAM_CONFIG_NAMES,
    SAM_ENCODERS,
    SamEncoderConfig,
    UniRefSamConfig,
    get_sam_config,
    sam_vit_b,
    sam_vit_h,
    sam_vit_l,
)
from uniref.modeling.sam.loss import SamLossWeights, uniref_sam_loss
from uniref.modeling.sam.padding import embedding_padding_mask
from uniref.modeling.sam.predictor_adapter import SamPredictorAdapter, SamPredictorOutput, SamVisualFeatures
from uniref.modeling.sam.train_step import SamStepOutput, SamTrainingModel, union_target
from uniref.modeling.sam.training import (
    ENGINE_BASE_STAGES,
    ENGINE_DATASET_NAMES,
    SamStageConfig,
    engine_stage_fields,
    freeze_for_training,
    parameter_counts,
    sam_image_stage,
    sam_video_stage,
    trainable_parameter_report,
)
from uniref.modeling.sam.uniref_sam import UniRefSAM, UniRefSamOutput, build_sam_model

__all__ = [
    "ENGINE_BASE_STAGES",
    "ENGINE_DATASET_NAMES",
    "SAM_CONFIG_NAMES",
    "SAM_ENCODERS",
    "SAM_OFFICIAL_PREFIXES",
    "SamEncoderConfig",
    "SamLoadReport",
    "SamLossWeights",
    "SamPredictorAdapter",
    "SamPredictorOutput",
    "SamStageConfig",
    "SamStepOutput",
    "SamTrainingModel",
    "SamVisualFeatures",
    "UniRefSAM",
    "UniRefSamConfig",
    "UniRefSamOutput",
    "build_sam_model",
    "embedding_padding_mask",
    "engine_stage_fields",
    "freeze_for_training",
    "get_sam_config",
    "load_sam_weights",
    "load_uniref_sam_checkpoint",
    "parameter_counts",
    "sam_image_stage",
    "sam_official_to_ours",
    "sam_ours_to_official",
    "sam_video_stage",
    "sam_vit_b",
    "sam_vit_h",
    "sam_vit_l",
    "to_official_sam_state_dict",
    "trainable_parameter_report",
    "union_target",
    "uniref_sam_loss",
]

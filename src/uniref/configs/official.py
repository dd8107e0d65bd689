"""Translate official detectron2-style config overrides (``KEY value`` pairs) into a :class:`ModelConfig`.

Only the keys that shape the network or its test-time resizing are understood; anything else that would
change the architecture is refused, so a config we cannot reproduce never loads silently.
"""

from __future__ import annotations

from uniref.configs import ModelConfig, TestResize, TextConfig, get_config

# official key -> our ModelConfig field
_FIELDS = {
    "MODEL.DDETRS.HIDDEN_DIM": "d_model",
    "MODEL.DDETRS.NHEADS": "nheads",
    "MODEL.DDETRS.DIM_FEEDFORWARD": "dim_feedforward",
    "MODEL.DDETRS.ENC_LAYERS": "enc_layers",
    "MODEL.DDETRS.DEC_LAYERS": "dec_layers",
    "MODEL.DDETRS.NUM_OBJECT_QUERIES": "num_queries",
}
# keys with no effect on the network or its inference
_INERT = {"OUTPUT_DIR", "MODEL.DEVICE", "MODEL.WEIGHTS", "MODEL.DDETRS.TWO_STAGE_NUM_PROPOSALS",
          "MODEL.RESNETS.RES2_OUT_CHANNELS", "MODEL.LANG_CONFIG.LANG_DIM"}


def config_from_official(overrides: list, bert_config: dict | None = None, *, base: str = "r50") -> ModelConfig:
    """Build our config from a flat ``[KEY, value, KEY, value, ...]`` override list on top of ``base``.

    Args:
        overrides: official config overrides (as recorded in the reference sidecars).
        bert_config: a ``BertConfig`` dict for the text encoder, when not bert-base.
        base: our config the official video-joint YAML corresponds to (``r50`` or ``swinl``).
    """
    if len(overrides) % 2:
        raise ValueError("official overrides must be KEY value pairs")
    cfg = get_config(base)
    changes: dict = {}
    pairs = dict(zip(overrides[::2], overrides[1::2]))
    queries, proposals = pairs.get("MODEL.DDETRS.NUM_OBJECT_QUERIES"), pairs.get("MODEL.DDETRS.TWO_STAGE_NUM_PROPOSALS")
    if queries is not None and proposals is not None and queries != proposals:
        raise ValueError("two-stage models need NUM_OBJECT_QUERIES == TWO_STAGE_NUM_PROPOSALS")
    for key, value in pairs.items():
        if key in _FIELDS:
            changes[_FIELDS[key]] = int(value)
        elif key == "MODEL.RESNETS.DEPTH":
            changes["backbone"] = f"resnet{int(value)}"
        elif key == "INPUT.MIN_SIZE_TEST":
            changes["_min"] = int(value)
        elif key == "INPUT.MAX_SIZE_TEST":
            changes["_max"] = int(value)
        elif key not in _INERT:
            raise ValueError(f"official config key {key} is not supported by uniref")
    lo, hi = changes.pop("_min", None), changes.pop("_max", None)
    if lo is not None or hi is not None:
        # The video configs set the test size of RIS and the video tasks; FSS keeps its hard-coded 480/768.
        size = TestResize(lo or cfg.video_test_size.short, hi or cfg.ris_test_size.max_size)
        changes["ris_test_size"] = size
        changes["video_test_size"] = size
    if bert_config is not None:
        fields = {f: bert_config[f] for f in TextConfig.__dataclass_fields__ if f in bert_config}
        changes["text"] = fields
    name = "tiny" if changes.get("backbone") == "resnet18" else base
    return cfg.replace(name=name, **changes)

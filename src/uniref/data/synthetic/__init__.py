"""A deterministic synthetic referring world: coloured, textured shapes, expressions, FSS classes and clips.

Every item is a pure function of ``(seed, task, split, index)`` (numpy generators only). Generate items
(:func:`generate_ris_image`, :func:`generate_fss_image`, :func:`generate_clip`), write them in the
benchmarks' native layouts (:func:`write_world` and one writer per layout) or train on them directly
(:func:`world_entries`). Seeds from :data:`HELD_OUT_SEED` on are kept for evaluation.
"""

from uniref.data.synthetic.expressions import Expression, resolve
from uniref.data.synthetic.vocabulary import COLOURS, SHAPES, SIZES, TEXTURES
from uniref.data.synthetic.world import (
    HELD_OUT_SEED,
    Clip,
    FSSImage,
    RISImage,
    WorldConfig,
    generate_clip,
    generate_fss_image,
    generate_ris_image,
)
from uniref.data.synthetic.writers import (
    WorldLayout,
    write_davis,
    write_fss,
    write_refer,
    write_refytvos,
    write_world,
)

__all__ = [
    "COLOURS", "HELD_OUT_SEED", "SHAPES", "SIZES", "TEXTURES", "Clip", "Expression", "FSSImage", "RISImage",
    "WorldConfig", "WorldLayout", "generate_clip", "generate_fss_image", "generate_ris_image", "resolve",
    "world_entries", "write_davis", "write_fss", "write_refer", "write_refytvos", "write_world",
]


def __getattr__(name: str):
    # the training adapter imports torch and the training package: load it only when asked for
    if name == "world_entries":
        from uniref.data.synthetic.training import world_entries

        return world_entries
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The closed vocabulary of the synthetic world: shape classes, named colours, textures, size classes.

Every word an expression can use is listed here, with the synonyms the paraphrases draw from. No word
contains "left" or "right" except the spatial ones, because the training flip swaps those substrings.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
"""Shape classes; the FSS class of an image is its target shape."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (45, 185, 60),
    "blue": (45, 85, 230),
    "yellow": (235, 215, 35),
    "purple": (150, 55, 205),
    "orange": (245, 135, 25),
    "white": (242, 242, 242),
    "cyan": (35, 210, 215),
}
"""Named object colours (RGB). Backgrounds are desaturated, so a colour name always refers to an object."""

TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted", "speckled")
"""Surface patterns: one colour, stripes, dots, per-object noise."""

SIZES: tuple[str, ...] = ("small", "medium", "large")

SIZE_RADIUS: dict[str, tuple[float, float]] = {
    "small": (0.06, 0.085),
    "medium": (0.105, 0.135),
    "large": (0.165, 0.21),
}
"""Radius range of each size class as a fraction of the image's shorter side; the gaps between the ranges
(a radius ratio of at least 1.22, an area ratio of about 1.5) keep the size words unambiguous. At 96 pixels
a small shape is still 12 pixels across, enough to tell the six outlines apart."""

SHAPE_WORDS: dict[str, tuple[str, ...]] = {s: (s,) for s in SHAPES}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium-sized", "mid-sized"),
    "large": ("large", "big"),
}
TEXTURE_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "solid": ("plain", "solid"),
    "striped": ("striped",),
    "dotted": ("dotted", "spotted"),
    "speckled": ("speckled", "grainy"),
}
TEXTURE_WITH: dict[str, tuple[str, ...]] = {
    "solid": ("with no pattern",),
    "striped": ("with stripes",),
    "dotted": ("with dots", "with spots"),
    "speckled": ("with speckles",),
}
OBJECT_NOUNS: tuple[str, ...] = ("object", "shape", "one")
"""Nouns used when the shape is left out ("the red one")."""


def word_to_attribute() -> dict[str, tuple[str, str]]:
    """Every attribute word (single words, lower case) -> (attribute, value); used to read expressions back."""
    table: dict[str, tuple[str, str]] = {}
    for shape, words in SHAPE_WORDS.items():
        for w in words:
            table[w] = ("shape", shape)
    for colour in COLOURS:
        table[colour] = ("colour", colour)
    for size, words in SIZE_WORDS.items():
        for w in words:
            table[w.replace("-", " ").split()[0]] = ("size", size)
    for texture, words in TEXTURE_ADJECTIVES.items():
        for w in words:
            table[w] = ("texture", texture)
    for texture, phrases in TEXTURE_WITH.items():
        for p in phrases:
            table[p.split()[-1]] = ("texture", texture)
    return table

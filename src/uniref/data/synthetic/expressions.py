"""Referring expressions: meanings, the rule that resolves a meaning in a scene, and their wordings.

An expression is generated from a *meaning* (attributes, a superlative, an ordinal, a spatial relation, or
for videos a motion, a turn or a position), and kept only when :func:`resolve` finds exactly one object for
it: the target must satisfy the meaning with a margin and every other object must fail even a looser
version of it (so near-ties never make an expression). The wording is then drawn from paraphrase
templates.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from uniref.data.synthetic.scene import Facts
from uniref.data.synthetic.vocabulary import OBJECT_NOUNS, SIZE_WORDS, TEXTURE_ADJECTIVES, TEXTURE_WITH

__all__ = [
    "NounPhrase", "Attribute", "Superlative", "Ordinal", "Relation", "Motion", "Turning", "Position",
    "Expression", "VideoFacts", "SceneResolver", "resolve", "realize", "describe_objects", "describe_video_objects",
]

DIRECTIONS = ("up", "down", "left", "right")


# ------------------------------------------------------------------------------------------ meanings


@dataclass(frozen=True)
class NounPhrase:
    """Attribute constraints; None = unconstrained."""

    shape: str | None = None
    colour: str | None = None
    texture: str | None = None
    size: str | None = None

    def matches(self, f: Facts) -> bool:
        return ((self.shape is None or self.shape == f.shape) and (self.colour is None or self.colour == f.colour)
                and (self.texture is None or self.texture == f.texture) and (self.size is None or self.size == f.size))

    @property
    def num_attributes(self) -> int:
        return sum(getattr(self, k) is not None for k in ("shape", "colour", "texture", "size"))


@dataclass(frozen=True)
class Attribute:
    """"the small green triangle"."""

    np: NounPhrase
    kind: str = field(default="attribute", init=False)


@dataclass(frozen=True)
class Superlative:
    """"the largest star" (``which`` = largest or smallest)."""

    np: NounPhrase
    which: str
    kind: str = field(default="superlative", init=False)


@dataclass(frozen=True)
class Ordinal:
    """"the second square from the left" (``rank`` 1-3, ``side`` left/right/top/bottom)."""

    np: NounPhrase
    side: str
    rank: int
    kind: str = field(default="ordinal", init=False)


@dataclass(frozen=True)
class Relation:
    """"the circle left of the blue square" (``relation`` left/right/above/below the anchor)."""

    np: NounPhrase
    relation: str
    anchor: NounPhrase
    kind: str = field(default="relation", init=False)


@dataclass(frozen=True)
class Motion:
    """"the square moving up" (``direction`` up/down/left/right, or still)."""

    np: NounPhrase
    direction: str
    kind: str = field(default="motion", init=False)


@dataclass(frozen=True)
class Turning:
    """"the spinning star"."""

    np: NounPhrase
    kind: str = field(default="turning", init=False)


@dataclass(frozen=True)
class Position:
    """"the circle on the left" (over the whole clip; ``side`` left/right/top/bottom)."""

    np: NounPhrase
    side: str
    kind: str = field(default="position", init=False)


Meaning = Attribute | Superlative | Ordinal | Relation | Motion | Turning | Position


@dataclass(frozen=True)
class Expression:
    """A sentence, its kind and the meaning it was made from."""

    text: str
    kind: str
    meaning: Meaning


@dataclass(frozen=True)
class VideoFacts(Facts):
    """Facts of a clip object: ``cx, cy`` are its mean centre over its visible frames.

    Attributes:
        direction: the clear motion label (up/down/left/right/still) or None.
        weak_directions: every label a viewer might also give it (a superset of ``direction``).
        turning: clearly spinning; turning_weak: spinning at all.
    """

    direction: str | None = None
    weak_directions: frozenset[str] = frozenset()
    turning: bool = False
    turning_weak: bool = False


# ------------------------------------------------------------------------------------------ resolution


def _coordinate(f: Facts, side: str) -> float:
    """A coordinate that increases away from ``side``."""
    return {"left": f.cx, "right": -f.cx, "top": f.cy, "bottom": -f.cy}[side]


def _relation(m: Facts, a: Facts, relation: str, strong: bool) -> bool:
    if relation in ("left", "right"):
        along = (a.cx - m.cx) if relation == "left" else (m.cx - a.cx)
        across = abs(m.cy - a.cy)
    else:
        along = (a.cy - m.cy) if relation == "above" else (m.cy - a.cy)
        across = abs(m.cx - a.cx)
    if strong:
        return along >= 0.5 * (m.radius + a.radius) + 2.0 and across <= 0.8 * along
    return along > 0.15 * (m.radius + a.radius) and across <= 1.5 * along


class SceneResolver:
    """Resolves meanings in one scene, caching which objects each noun phrase matches."""

    def __init__(self, facts: Sequence[Facts], frame: tuple[int, int]):
        self.facts = tuple(facts)
        self.height, self.width = frame
        self._members: dict[NounPhrase, list[int]] = {}

    def members(self, np_: NounPhrase) -> list[int]:
        found = self._members.get(np_)
        if found is None:
            found = self._members[np_] = [i for i, f in enumerate(self.facts) if np_.matches(f)]
        return found

    def resolve(self, meaning: Meaning) -> int | None:  # noqa: C901 - one rule per kind
        """The one object ``meaning`` refers to, or None when it fits none or several."""
        facts = self.facts
        members = self.members(meaning.np)
        if isinstance(meaning, Attribute):
            return members[0] if len(members) == 1 else None
        if isinstance(meaning, Superlative):
            if len(members) < 2:
                return None
            ranked = sorted(members, key=lambda i: facts[i].area, reverse=meaning.which == "largest")
            a, b = facts[ranked[0]].area, facts[ranked[1]].area
            clear = a >= 1.3 * b if meaning.which == "largest" else b >= 1.3 * a
            return ranked[0] if clear else None
        if isinstance(meaning, Ordinal):
            if len(members) < meaning.rank + 1:
                return None
            ranked = sorted(members, key=lambda i: _coordinate(facts[i], meaning.side))
            coords = [_coordinate(facts[i], meaning.side) for i in ranked]
            gap = max(4.0, 0.05 * (self.width if meaning.side in ("left", "right") else self.height))
            k = meaning.rank - 1
            if any(abs(coords[k] - coords[j]) < gap for j in (k - 1, k + 1) if 0 <= j < len(coords)):
                return None
            return ranked[k]
        if isinstance(meaning, Relation):
            anchors = self.members(meaning.anchor)
            if len(anchors) != 1:
                return None
            a = facts[anchors[0]]
            others = [i for i in members if i != anchors[0]]
            strong = [i for i in others if _relation(facts[i], a, meaning.relation, True)]
            weak = [i for i in others if _relation(facts[i], a, meaning.relation, False)]
            return strong[0] if len(strong) == 1 and weak == strong else None
        if isinstance(meaning, Motion):
            strong = [i for i in members if getattr(facts[i], "direction", None) == meaning.direction]
            weak = [i for i in members if meaning.direction in getattr(facts[i], "weak_directions", ())]
            return strong[0] if len(strong) == 1 and weak == strong else None
        if isinstance(meaning, Turning):
            strong = [i for i in members if getattr(facts[i], "turning", False)]
            weak = [i for i in members if getattr(facts[i], "turning_weak", False)]
            return strong[0] if len(strong) == 1 and weak == strong else None
        if isinstance(meaning, Position):
            if len(members) < 2:
                return None
            ranked = sorted(members, key=lambda i: _coordinate(facts[i], meaning.side))
            gap = 0.18 * (self.width if meaning.side in ("left", "right") else self.height)
            first, second = (_coordinate(facts[i], meaning.side) for i in ranked[:2])
            return ranked[0] if second - first >= gap else None
        raise TypeError(f"unknown meaning {meaning!r}")


def resolve(meaning: Meaning, facts: Sequence[Facts], frame: tuple[int, int]) -> int | None:
    """The one object ``meaning`` refers to among ``facts``, or None when it fits none or several.

    The target must satisfy the meaning with a margin and every other object must fail a looser version
    of it. ``frame`` = ``(H, W)`` of the image (margins of ordinals and positions scale with it).
    """
    return SceneResolver(facts, frame).resolve(meaning)


# ------------------------------------------------------------------------------------------ wording


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def _noun_phrase(np_: NounPhrase, rng: np.random.Generator, *, article: bool = True, plural: bool = False) -> str:
    """"the small striped green triangle", "the green triangle with stripes", "the triangle that is small"."""
    before: list[str] = []
    after: list[str] = []
    size_after = np_.size is not None and not plural and rng.random() < 0.2
    if np_.size is not None and not size_after:
        before.append(_pick(rng, SIZE_WORDS[np_.size]))
    if np_.texture is not None:
        if rng.random() < 0.6:
            before.append(_pick(rng, TEXTURE_ADJECTIVES[np_.texture]))
        else:
            after.append(_pick(rng, TEXTURE_WITH[np_.texture]))
    if np_.colour is not None:
        before.append(np_.colour)
    noun = np_.shape if np_.shape is not None else _pick(rng, OBJECT_NOUNS if not plural else ("object", "shape"))
    if plural:
        noun = _plural(noun)
    if size_after:
        after.append("that is " + _pick(rng, SIZE_WORDS[np_.size]))
    words = before + [noun] + after
    if article:
        words.insert(0, "the")
    return " ".join(words)


def _superlative_word(which: str, rng: np.random.Generator) -> str:
    return _pick(rng, ("largest", "biggest") if which == "largest" else ("smallest", "tiniest"))


def realize(meaning: Meaning, rng: np.random.Generator) -> str:
    """One wording of ``meaning`` (paraphrases are drawn with ``rng``)."""
    np_ = meaning.np
    if isinstance(meaning, Attribute):
        text = _noun_phrase(np_, rng)
        return text[len("the "):] if rng.random() < 0.15 else text
    bare = _noun_phrase(np_, rng, article=False)
    if isinstance(meaning, Superlative):
        word = _superlative_word(meaning.which, rng)
        if rng.random() < 0.3:
            return f"the {word} of the {_noun_phrase(np_, rng, article=False, plural=True)}"
        return f"the {word} {bare}"
    if isinstance(meaning, Ordinal):
        side, rank = meaning.side, meaning.rank
        from_side = f"from the {side}"
        if rank == 1:
            extreme = {"left": ("leftmost",), "right": ("rightmost",), "top": ("topmost", "highest"),
                       "bottom": ("lowest", "bottommost")}[side]
            far = {"left": "on the far left", "right": "on the far right", "top": "at the very top",
                   "bottom": "at the very bottom"}[side]
            return _pick(rng, (f"the {_pick(rng, extreme)} {bare}", f"the {bare} {far}",
                               f"the first {bare} {from_side}"))
        ordinal = {2: "second", 3: "third"}[rank]
        return _pick(rng, (f"the {ordinal} {bare} {from_side}", f"the {bare} {ordinal} {from_side}"))
    if isinstance(meaning, Relation):
        anchor = _noun_phrase(meaning.anchor, rng)
        words = {"left": ("left of", "to the left of", "on the left of"),
                 "right": ("right of", "to the right of", "on the right of"),
                 "above": ("above", "over"), "below": ("below", "under", "beneath")}[meaning.relation]
        return f"the {bare} {_pick(rng, words)} {anchor}"
    if isinstance(meaning, Motion):
        if meaning.direction == "still":
            return _pick(rng, (f"the still {bare}", f"the {bare} that is not moving", f"the {bare} standing still",
                               f"the motionless {bare}"))
        d = meaning.direction
        dir_words = {"up": ("up", "upwards"), "down": ("down", "downwards"), "left": ("left", "to the left"),
                     "right": ("right", "to the right")}[d]
        verb = _pick(rng, ("moving", "that moves", "going", "heading"))
        return f"the {bare} {verb} {_pick(rng, dir_words)}"
    if isinstance(meaning, Turning):
        return _pick(rng, (f"the spinning {bare}", f"the {bare} that is turning", f"the rotating {bare}",
                           f"the {bare} turning around"))
    if isinstance(meaning, Position):
        side = meaning.side
        return _pick(rng, {
            "left": (f"the {bare} on the left", f"the {bare} on the left side", f"the left {bare}"),
            "right": (f"the {bare} on the right", f"the {bare} on the right side", f"the right {bare}"),
            "top": (f"the {bare} at the top", f"the upper {bare}"),
            "bottom": (f"the {bare} at the bottom", f"the lower {bare}"),
        }[side])
    raise TypeError(f"unknown meaning {meaning!r}")


# ------------------------------------------------------------------------------------------ generation


def _attribute_phrases(f: Facts) -> list[NounPhrase]:
    """Every noun phrase true of ``f``: the shape with any subset of colour/size/texture, and colour phrases
    without a shape."""
    phrases = []
    for k in range(0, 4):
        for keys in itertools.combinations(("colour", "size", "texture"), k):
            values = {key: getattr(f, key) for key in keys}
            phrases.append(NounPhrase(shape=f.shape, **values))
            if "colour" in keys:
                phrases.append(NounPhrase(**values))
    return phrases


def _short_unique_phrase(index: int, resolver: SceneResolver) -> NounPhrase | None:
    """The fewest-attribute phrase (with a shape) that singles object ``index`` out (relation anchors)."""
    for np_ in sorted(_attribute_phrases(resolver.facts[index]), key=lambda p: p.num_attributes):
        if np_.shape is not None and resolver.members(np_) == [index]:
            return np_
    return None


def _image_meanings(target: int, resolver: SceneResolver, anchors: Sequence[NounPhrase | None]
                    ) -> dict[str, list[Meaning]]:
    f = resolver.facts[target]
    valid: dict[str, list[Meaning]] = {}

    def keep(m: Meaning) -> None:
        if resolver.resolve(m) == target:
            valid.setdefault(m.kind, []).append(m)

    phrases = _attribute_phrases(f)
    minimal: list[Meaning] = []
    for np_ in phrases:
        keep(Attribute(np_))
    attrs = valid.get("attribute", [])
    for m in attrs:
        # minimal: no valid phrase uses a strict subset of its attributes
        if not any(o is not m and _subset(o.np, m.np) for o in attrs):
            minimal.append(m)
    if minimal:
        valid["attribute_minimal"] = minimal
    group_phrases = [NounPhrase(shape=f.shape), NounPhrase(shape=f.shape, colour=f.colour), NounPhrase(colour=f.colour)]
    for np_ in group_phrases:
        for which in ("largest", "smallest"):
            keep(Superlative(np_, which))
    for np_ in group_phrases[:2]:
        for side in ("left", "right", "top", "bottom"):
            for rank in (1, 2, 3):
                keep(Ordinal(np_, side, rank))
    for j, anchor in enumerate(anchors):
        if j == target or anchor is None:
            continue
        for np_ in group_phrases[:2]:
            for relation in ("left", "right", "above", "below"):
                keep(Relation(np_, relation, anchor))
    return valid


def _subset(a: NounPhrase, b: NounPhrase) -> bool:
    """True when ``a`` constrains a strict subset of what ``b`` constrains (and agrees on it)."""
    keys = ("shape", "colour", "texture", "size")
    a_keys = {k for k in keys if getattr(a, k) is not None}
    b_keys = {k for k in keys if getattr(b, k) is not None}
    return a_keys < b_keys and all(getattr(a, k) == getattr(b, k) for k in a_keys)


_IMAGE_KIND_WEIGHTS = {"attribute": 1.0, "relation": 1.0, "ordinal": 0.8, "superlative": 0.7}


def _choose(valid: dict[str, list[Meaning]], weights: dict[str, float], count: int,
            rng: np.random.Generator) -> list[Meaning]:
    """Up to ``count`` distinct meanings, one kind after another (kinds drawn by weight), so that an object's
    sentences mix attributes, relations, ordinals, ..."""
    kinds = [k for k in weights if valid.get(k)]
    chosen: list[Meaning] = []
    while kinds and len(chosen) < count:
        p = np.asarray([weights[k] for k in kinds])
        kind = kinds.pop(int(rng.choice(len(kinds), p=p / p.sum())))
        pool = valid[kind]
        if kind == "attribute" and valid.get("attribute_minimal") and rng.random() < 0.6:
            pool = valid["attribute_minimal"]
        chosen.append(pool[int(rng.integers(len(pool)))])
    rest = [m for k in weights for m in valid.get(k, []) if m not in chosen]
    while rest and len(chosen) < count:
        chosen.append(rest.pop(int(rng.integers(len(rest)))))
    return chosen


def _to_expressions(meanings: Sequence[Meaning], rng: np.random.Generator) -> tuple[Expression, ...]:
    out: list[Expression] = []
    texts: set[str] = set()
    for m in meanings:
        text = realize(m, rng)
        if text not in texts:
            texts.add(text)
            out.append(Expression(text, m.kind, m))
    return tuple(out)


def describe_objects(
    facts: Sequence[Facts], targets: Sequence[int], frame: tuple[int, int], rng: np.random.Generator,
    *, per_object: int = 3,
) -> dict[int, tuple[Expression, ...]]:
    """Up to ``per_object`` unambiguous expressions for each target of a still scene (targets without any
    are left out)."""
    out: dict[int, tuple[Expression, ...]] = {}
    resolver = SceneResolver(facts, frame)
    anchors = [_short_unique_phrase(j, resolver) for j in range(len(facts))]
    for t in targets:
        valid = _image_meanings(t, resolver, anchors)
        chosen = _choose(valid, _IMAGE_KIND_WEIGHTS, per_object, rng)
        if chosen:
            out[t] = _to_expressions(chosen, rng)
    return out


_VIDEO_KIND_WEIGHTS = {"motion": 1.2, "position": 0.8, "turning": 0.6, "attribute": 0.25}


def _video_meanings(target: int, resolver: SceneResolver) -> dict[str, list[Meaning]]:
    f = resolver.facts[target]
    valid: dict[str, list[Meaning]] = {}

    def keep(m: Meaning) -> None:
        if resolver.resolve(m) == target:
            valid.setdefault(m.kind, []).append(m)

    phrases = [NounPhrase(shape=f.shape), NounPhrase(shape=f.shape, colour=f.colour), NounPhrase(colour=f.colour),
               NounPhrase(shape=f.shape, texture=f.texture)]
    for np_ in phrases:
        if f.direction is not None:
            keep(Motion(np_, f.direction))
        keep(Turning(np_))
        for side in ("left", "right", "top", "bottom"):
            keep(Position(np_, side))
    for np_ in _attribute_phrases(f):
        if np_.num_attributes <= 2:
            keep(Attribute(np_))
    return valid


def describe_video_objects(
    facts: Sequence[VideoFacts], targets: Sequence[int], frame: tuple[int, int], rng: np.random.Generator,
    *, per_object: int = 2,
) -> dict[int, tuple[Expression, ...]]:
    """Up to ``per_object`` expressions per target of a clip, preferring motion and position; an attribute
    expression is used only when no motion, turn or position singles the object out."""
    out: dict[int, tuple[Expression, ...]] = {}
    resolver = SceneResolver(facts, frame)
    for t in targets:
        valid = _video_meanings(t, resolver)
        dynamic = {k: v for k, v in valid.items() if k != "attribute"}
        chosen = _choose(dynamic or valid, _VIDEO_KIND_WEIGHTS, per_object, rng)
        if chosen:
            out[t] = _to_expressions(chosen, rng)
    return out


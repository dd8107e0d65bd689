"""The synthetic world: determinism, exact visible masks, unambiguous expressions (checked by an independent
reading of each sentence), FSS classes and clips."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from uniref.data.synthetic import SHAPES, WorldConfig, generate_clip, generate_fss_image, generate_ris_image
from uniref.data.synthetic.render import rasterize
from uniref.data.synthetic.vocabulary import word_to_attribute
from uniref.modeling.text.tokenizer import clean_expression

WORDS = word_to_attribute()
WORDS.update({(s + "es" if s.endswith("s") else s + "s"): ("shape", s) for s in SHAPES})  # "the largest of the stars"


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_items_and_different_seed_different_items():
    a, b, c = generate_ris_image(3, 5), generate_ris_image(3, 5), generate_ris_image(4, 5)
    assert a.image.tobytes() == b.image.tobytes() and a.masks.tobytes() == b.masks.tobytes()
    assert [e.text for v in a.expressions.values() for e in v] == [e.text for v in b.expressions.values() for e in v]
    assert a.image.tobytes() != c.image.tobytes()
    assert generate_ris_image(3, 6).image.tobytes() != a.image.tobytes()  # items differ within a seed
    assert generate_ris_image(3, 5, split="val").image.tobytes() != a.image.tobytes()  # and across splits
    f1, f2 = generate_fss_image(1, "star", 2), generate_fss_image(1, "star", 2)
    assert f1.image.tobytes() == f2.image.tobytes() and f1.mask.tobytes() == f2.mask.tobytes()
    v1, v2, v3 = generate_clip(2, 0, referring=True), generate_clip(2, 0, referring=True), generate_clip(9, 0)
    assert v1.frames.tobytes() == v2.frames.tobytes() and v1.labels.tobytes() == v2.labels.tobytes()
    assert v1.frames.tobytes() != v3.frames.tobytes()


def test_generation_uses_no_global_random_state():
    np.random.seed(0)
    a = generate_ris_image(7, 1).image
    np.random.seed(123)
    np.random.random(10)
    b = generate_ris_image(7, 1).image
    assert a.tobytes() == b.tobytes()


def test_an_image_takes_a_few_milliseconds():
    generate_ris_image(0, 0)
    start = time.process_time()
    for i in range(20):
        generate_ris_image(0, i)
    per_image = (time.process_time() - start) / 20
    assert per_image < 0.05, f"{per_image * 1000:.1f} ms per 96x128 RIS image (with its expressions)"


# ------------------------------------------------------------------------------------------ masks


@pytest.mark.parametrize("index", range(6))
def test_masks_are_the_exact_visible_parts(index):
    item = generate_ris_image(11, index, split="testB")  # crowded scenes: more occlusion
    scene = item.scene
    n, (h, w) = len(scene.objects), scene.image.shape[:2]
    assert scene.masks.shape == (n, h, w) and scene.masks.dtype == bool
    assert scene.masks.sum(0).max() <= 1, "visible masks overlap"
    occupied = np.zeros((h, w), bool)
    for k in range(n - 1, -1, -1):  # front to back
        obj = scene.objects[k]
        full = rasterize(obj.appearance.shape, obj.appearance.radius, obj.pose, h, w).full(h, w)
        np.testing.assert_array_equal(scene.masks[k], full & ~occupied)
        assert scene.masks[k].sum() >= 0.55 * full.sum() > 0  # occluded, never hidden
        occupied |= full
    # the painted colours follow the masks: object pixels are far from the desaturated background
    for k, obj in enumerate(scene.objects):
        if obj.appearance.texture == "solid":
            mean = scene.image[scene.masks[k]].astype(float).mean(0)
            assert np.abs(mean - np.asarray(obj.appearance.rgb)).max() < 25


def test_fss_mask_is_every_visible_object_of_the_class():
    for shape in SHAPES:
        item = generate_fss_image(5, shape, 1)
        objects = item.scene.objects
        keep = [k for k, o in enumerate(objects) if o.appearance.shape == shape]
        assert keep and any(o.appearance.shape != shape for o in objects)
        np.testing.assert_array_equal(item.mask, item.scene.masks[keep].any(0))
        assert item.mask.sum() > 30


def test_fss_supports_differ_from_queries():
    from uniref.data.synthetic.world import fss_class_attributes

    attrs = fss_class_attributes(0, "ring", 10)
    first = attrs[0]
    assert all(a[0] != first[0] and a[1] != first[1] and a[2] != first[2] for a in attrs[1:])
    item = generate_fss_image(0, "ring", 3, attributes=attrs[3])
    main = item.targets[0]
    assert (main.colour, main.size, main.texture) == attrs[3]


# ------------------------------------------------------------------------------------------ expressions

_RELATIONS = {"left of": "left", "right of": "right", "above": "above", "over": "above", "below": "below",
              "under": "below", "beneath": "below"}
_SUPERLATIVES = {"largest": "largest", "biggest": "largest", "smallest": "smallest", "tiniest": "smallest"}
_EXTREMES = {"leftmost": ("left", 1), "rightmost": ("right", 1), "topmost": ("top", 1), "highest": ("top", 1),
             "lowest": ("bottom", 1), "bottommost": ("bottom", 1), "far left": ("left", 1),
             "far right": ("right", 1), "very top": ("top", 1), "very bottom": ("bottom", 1)}
_RANKS = {"first": 1, "second": 2, "third": 3}


def _attributes(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for word in text.split():
        if word in WORDS:
            key, value = WORDS[word]
            assert found.get(key, value) == value, f"contradictory {key} in {text!r}"
            found[key] = value
    return found


def _matches(appearance, attrs: dict[str, str]) -> bool:
    return all(getattr(appearance, k) == v for k, v in attrs.items())


def _check_image_sentence(sentence: str, target: int, scene) -> str:
    """Read the sentence independently of the generator and check it singles out ``target``; returns its kind."""
    text = clean_expression(sentence)
    objs = scene.objects
    apps = [o.appearance for o in objs]
    for phrase, relation in _RELATIONS.items():
        match = re.search(rf"\b{phrase}\b", text)
        if match:
            head, tail = text[: match.start()], text[match.end():]
            anchors = [k for k, a in enumerate(apps) if _matches(a, _attributes(tail))]
            assert len(anchors) == 1, f"{sentence!r}: anchor is not unique"
            a = objs[anchors[0]]
            members = [k for k, app in enumerate(apps) if _matches(app, _attributes(head)) and k != anchors[0]]
            assert target in members

            def along_across(k):
                p = objs[k].pose
                dx, dy = p.cx - a.pose.cx, p.cy - a.pose.cy
                return {"left": (-dx, abs(dy)), "right": (dx, abs(dy)), "above": (-dy, abs(dx)),
                        "below": (dy, abs(dx))}[relation]

            along, across = along_across(target)
            assert along > 0 and across < along, f"{sentence!r}: the target is not {relation} the anchor"
            for k in members:
                if k != target:
                    al, ac = along_across(k)
                    slack = 0.15 * (apps[k].radius + a.appearance.radius)
                    assert al <= slack or ac > 1.5 * al, f"{sentence!r}: object {k} is also {relation} the anchor"
            return "relation"
    words = text.split()
    superlative = next((_SUPERLATIVES[w] for w in words if w in _SUPERLATIVES), None)
    members = [k for k, a in enumerate(apps) if _matches(a, _attributes(text))]
    assert target in members, f"{sentence!r} does not describe the target"
    if superlative:
        assert len(members) >= 2
        areas = {k: scene.full_areas[k] for k in members}
        best = max(areas, key=areas.get) if superlative == "largest" else min(areas, key=areas.get)
        assert best == target, f"{sentence!r}: the {superlative} is object {best}"
        return "superlative"
    side_rank = next((v for k, v in _EXTREMES.items() if k in text), None)
    if side_rank is None:
        for word, rank in _RANKS.items():
            if word in words:
                side = re.search(r"from the (left|right|top|bottom)", text).group(1)
                side_rank = (side, rank)
    if side_rank is not None:
        side, rank = side_rank
        key = {"left": lambda k: objs[k].pose.cx, "right": lambda k: -objs[k].pose.cx,
               "top": lambda k: objs[k].pose.cy, "bottom": lambda k: -objs[k].pose.cy}[side]
        ranked = sorted(members, key=key)
        assert len(ranked) > rank and ranked[rank - 1] == target, f"{sentence!r}: wrong rank"
        return "ordinal"
    assert members == [target], f"{sentence!r} matches objects {members}"
    return "attribute"


def test_expressions_single_out_their_object():
    kinds: dict[str, int] = {}
    ranks: set[str] = set()
    total = 0
    for index in range(40):
        item = generate_ris_image(21, index, split="testB" if index % 4 == 0 else "val")
        assert item.expressions, "every scene has something to refer to"
        for target, expressions in item.expressions.items():
            assert item.scene.visible_fraction[target] >= 0.6
            for e in expressions:
                kind = _check_image_sentence(e.text, target, item.scene)
                assert kind == e.kind, f"{e.text!r} read as {kind}, generated as {e.kind}"
                kinds[kind] = kinds.get(kind, 0) + 1
                ranks |= {w for w in ("second", "third") if w in e.text.split()}
                total += 1
    # every template family is used, and attributes alone are a minority of the sentences
    assert set(kinds) == {"attribute", "relation", "ordinal", "superlative"}, kinds
    assert kinds["attribute"] < 0.5 * total
    assert ranks >= {"second"}, "ordinals beyond the extremes appear"


def test_paraphrases_vary_the_wording():
    texts = {e.text for i in range(40) for v in generate_ris_image(2, i).expressions.values() for e in v}
    assert any(t.startswith("the ") for t in texts) and any(not t.startswith("the ") for t in texts)
    assert any(" with " in t for t in texts) and any("that is" in t for t in texts)
    assert any("to the left of" in t for t in texts) and any(re.search(r"\bleft of\b", t) and "to the" not in t
                                                                for t in texts)
    assert not any("bright" in t for t in texts)  # a flip would turn it into "bleft"


# ------------------------------------------------------------------------------------------ clips


def _displacement(clip, obj_id):
    layout = clip.layout
    seen = np.flatnonzero((clip.labels.reshape(len(clip.labels), -1) == obj_id).any(1))
    traj = layout.objects[obj_id - 1].trajectory
    a, b = traj.pose(int(seen[0])), traj.pose(int(seen[-1]))
    return b.cy - a.cy, b.cx - a.cx


@pytest.mark.parametrize("index", range(8))
def test_clip_objects_masks_and_first_appearances(index):
    cfg = WorldConfig()
    clip = generate_clip(31, index, cfg, referring=index % 2 == 1)
    t, h, w = clip.labels.shape
    assert clip.frames.shape == (t, h, w, 3) == (cfg.num_frames, cfg.height, cfg.width, 3)
    ids = clip.object_ids
    firsts = [clip.first_frames[k] for k in ids]
    assert firsts == sorted(firsts), "ids follow the order of first appearance"
    assert (clip.labels[0] > 0).any(), "the first frame has objects (DAVIS needs them)"
    for k in ids:
        visible = [(clip.labels[f] == k).sum() for f in range(t)]
        first = clip.first_frames[k]
        assert all(v == 0 for v in visible[:first]) and visible[first] >= 12
        assert sum(v > 0 for v in visible) >= 3
    # labels are exact: a frame's labels equal the z-ordered rasters of the objects at that time
    f = t // 2
    expect = np.zeros((h, w), np.uint8)
    for k in clip.layout.z_order:  # back to front: later ones cover earlier ones
        obj = clip.layout.objects[k]
        r = rasterize(obj.appearance.shape, obj.appearance.radius, obj.trajectory.pose(f), h, w)
        if r is not None:
            expect[r.full(h, w)] = k + 1
    np.testing.assert_array_equal(clip.labels[f], expect)


def test_clips_move_turn_enter_and_leave():
    late = leave = moving = turning = curved = 0
    for index in range(30):
        clip = generate_clip(41, index)
        for k in clip.object_ids:
            late += clip.first_frames[k] > 0
            leave += not (clip.labels[-1] == k).any()
            traj = clip.layout.objects[k - 1].trajectory
            moving += np.hypot(*traj.velocity) > 0
            turning += traj.omega != 0
            curved += np.hypot(*traj.acceleration) > 0
    assert min(late, leave, moving, turning, curved) > 0, (late, leave, moving, turning, curved)


_DIRECTION_WORDS = {"up": "up", "upwards": "up", "down": "down", "downwards": "down", "left": "left",
                    "right": "right"}


def test_rvos_expressions_need_motion_or_position_and_are_unambiguous():
    kinds: dict[str, int] = {}
    for index in range(20):
        clip = generate_clip(51, index, referring=True)
        assert clip.expressions
        apps = {k: clip.layout.objects[k - 1].appearance for k in clip.object_ids}
        for obj, expressions in clip.expressions.items():
            for e in expressions:
                kinds[e.kind] = kinds.get(e.kind, 0) + 1
                text = clean_expression(e.text)
                attrs = _attributes(text)
                members = [k for k, a in apps.items() if _matches(a, attrs)]
                assert obj in members
                if e.kind != "attribute":
                    assert len(members) >= 2 or e.kind in ("motion", "turning"), e.text
                if e.kind == "motion" and not any(w in text for w in ("still", "not moving", "motionless")):
                    word = re.search(r"(moving|moves|going|heading)( to the)? (\w+)", text).group(3)
                    d = _DIRECTION_WORDS[word]
                    unit = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}[d]

                    def along(k):
                        dy, dx = _displacement(clip, k)
                        return dy * unit[0] + dx * unit[1], np.hypot(dy, dx)

                    a, n = along(obj)
                    assert a > 0.8 * n, f"{e.text!r}: the object does not move {d}"
                    for k in members:
                        if k != obj:
                            ak, nk = along(k)
                            assert ak <= 0.4 * nk or nk < 2.0, f"{e.text!r}: object {k} also moves {d}"
                if e.kind == "position":
                    side = next(s for s in ("left", "right", "top", "bottom", "upper", "lower") if s in text.split())
                    side = {"upper": "top", "lower": "bottom"}.get(side, side)
                    axis = 1 if side in ("left", "right") else 0
                    sign = 1 if side in ("left", "top") else -1

                    def mean_pos(k):
                        frames = [f for f in range(len(clip.labels)) if (clip.labels[f] == k).any()]
                        p = [clip.layout.objects[k - 1].trajectory.pose(f) for f in frames]
                        return sign * np.mean([(q.cy, q.cx)[axis] for q in p])

                    assert all(mean_pos(obj) < mean_pos(k) for k in members if k != obj), e.text
    assert kinds.get("motion", 0) > kinds.get("attribute", 0) and kinds.get("position", 0) > 0, kinds

"""Streaming ``VideoPredictor.step(frame, new_masks)`` equals ``propagate`` and keeps no frame."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from inference_fixtures import first_appearances, make_video, official_or_random_tiny_model
from uniref.inference.preprocess import shortest_edge_size
from uniref.inference.video_predictor import VideoPredictor


def _held_arrays(root) -> list[tuple[int, ...]]:
    """Shapes of every tensor / array reachable from ``root``, not looking inside the network's modules."""
    seen, stack, shapes = set(), [root], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (torch.nn.Module, type)):
            continue
        seen.add(id(obj))
        if isinstance(obj, (torch.Tensor, np.ndarray)):
            shapes.append(tuple(obj.shape))
            continue
        stack.extend(gc.get_referents(obj))
    return shapes


def _nbytes(root) -> int:
    return sum(int(np.prod(s, dtype=np.int64)) for s in _held_arrays(root))


@pytest.mark.slow
def test_step_equals_propagate_and_holds_no_frames():
    model = official_or_random_tiny_model()
    frames, labels = make_video(t=7, seed=2)
    masks = first_appearances(labels)

    offline = VideoPredictor(model)
    state = offline.init_state(iter(frames))  # a one-shot iterator: nothing of the input is kept either
    for f, objs in masks.items():
        for o, m in objs.items():
            offline.add_mask(state, f, o, m)
    expected = list(offline.propagate(state))

    live = VideoPredictor(model)
    h, w = frames[0].shape[:2]
    size = model.config.video_test_size
    rh, rw = shortest_edge_size(h, w, size.short, size.max_size)
    frame_like = {(h, w), (rh, rw), (-(-rh // 32) * 32, -(-rw // 32) * 32)}
    held_at = {}
    for f, frame in enumerate(frames):
        got = live.step(frame, masks.get(f))
        assert got.frame_idx == f and got.obj_ids == expected[f].obj_ids
        np.testing.assert_array_equal(got.label_map, expected[f].label_map)
        np.testing.assert_array_equal(got.scores, expected[f].scores)
        del got
        shapes = _held_arrays(live)
        bad = [s for s in shapes if any(s[i : i + 2] in frame_like for i in range(len(s) - 1))]
        assert not bad, f"after frame {f} the tracker holds frame-sized arrays {bad}"
        held_at[f] = _nbytes(live)
    assert any(r.label_map.any() for r in expected[1:])
    # bounded state: at most two references (first and previous) per object, nothing per frame
    tracker = live._stream
    one_ref = _nbytes(tracker.objects[1].init)
    bound = 2 * len(tracker.objects) * one_ref
    assert len(tracker.objects) == 3 and one_ref > 0
    assert all(held_at[f] <= bound for f in range(2, 7)), (held_at, bound)
    print(f"\nheld by the tracker (elements): {held_at}; bound {bound}")

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from uniref.io.rle import decode_rle, encode_rle, mask_to_coco_result, rle_area, rle_to_bbox, write_coco_results


@pytest.fixture
def mask():
    out = np.zeros((6, 9), bool)
    out[1:4, 2:7] = True
    out[5, 0] = True
    return out


def test_round_trip_and_json_ready(mask):
    rle = encode_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [6, 9]
    json.dumps(rle)
    np.testing.assert_array_equal(decode_rle(rle), mask)
    assert rle_area(rle) == int(mask.sum())
    assert rle_to_bbox(rle) == [0.0, 1.0, 7.0, 5.0]


def test_encoding_is_column_major_as_pycocotools_expects(mask):
    # A hand-written uncompressed RLE runs down the columns: column 0 = 5 zeros then a one.
    counts = []
    flat = mask.T.reshape(-1)  # Fortran order
    value, run = False, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    np.testing.assert_array_equal(decode_rle({"size": [6, 9], "counts": counts}), mask)
    expected = mask_utils.frPyObjects({"size": [6, 9], "counts": counts}, 6, 9)
    assert encode_rle(mask)["counts"] == expected["counts"].decode()


def test_result_file_is_written_atomically(tmp_path, mask):
    entry = mask_to_coco_result(mask, image_id=3, score=0.75, sent_id=11)
    assert entry["bbox"] == [0.0, 1.0, 7.0, 5.0] and entry["sent_id"] == 11
    path = write_coco_results(tmp_path / "res.json", [entry])
    loaded = json.loads(path.read_text())
    np.testing.assert_array_equal(decode_rle(loaded[0]["segmentation"]), mask)
    with pytest.raises(TypeError):
        write_coco_results(tmp_path / "bad.json", [{"x": object()}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res.json"]


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        encode_rle(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="size"):
        decode_rle({"counts": "x"})

from __future__ import annotations

from pathlib import Path

import pytest

from uniref.data.datasets import (
    InconsistentDataError,
    MissingDataError,
    RefDAVIS17Dataset,
    build_dataset,
    parse_davis_text_annotations,
)

TEXTS = {
    "Davis17_annot1.txt": ('seqA 1 "a red car"\nseqA 2 "a man"\nseqB 1 "the dog"\n', "utf-8"),
    "Davis17_annot1_full_video.txt": ('seqA 2 "a man walking"\nseqA 1 "red car driving"\nseqB 1 "dog running"\n',
                                      "utf-8"),
    # Annotator 2 ships in Latin-1, with a misspelled sequence name and looser quoting.
    "Davis17_annot2.txt": ('\nseqA 1 "caf\u00e9 car"\nseqA 2 \'person\'\nclasic-car 1 "old car"\nseqB 1 dog\n',
                           "latin-1"),
    "Davis17_annot2_full_video.txt": ('seqA   1   "car moving"\nseqA 2 "man moving"\nseqB 1 "dog moving"\n',
                                      "latin-1"),
}


@pytest.fixture
def refdavis_root(tmp_path: Path, write) -> Path:
    root = tmp_path / "ref-davis"
    write.davis(root, annotations="Annotations_unsupervised")
    text_dir = root / "davis_text_annotations"
    text_dir.mkdir()
    for name, (content, encoding) in TEXTS.items():
        (text_dir / name).write_bytes(content.encode(encoding))
    return root


def test_four_annotation_sets(refdavis_root: Path) -> None:
    texts = []
    for annotation_set in range(4):
        ds = RefDAVIS17Dataset(refdavis_root, "val", annotation_set=annotation_set)
        assert ds.names == ("seqA", "seqB")
        seq_a = ds[0]
        assert [e.obj_id for e in seq_a.expressions] == [1, 2]
        assert [e.exp_id for e in seq_a.expressions] == ["1", "2"]
        texts.append(tuple(e.text for e in seq_a.expressions) + (ds[1].expressions[0].text,))
        assert seq_a.first_masks == {} and len(seq_a) == 4
        assert seq_a.annotation_paths[0] == refdavis_root / "DAVIS/Annotations_unsupervised/480p/seqA/00000.png"
    assert texts == [
        ("a red car", "a man", "the dog"),
        ("red car driving", "a man walking", "dog running"),
        ("caf\u00e9 car", "person", "dog"),
        ("car moving", "man moving", "dog moving"),
    ]
    assert build_dataset("refdavis", refdavis_root, annotation_set=3)[0].info["annotation_set_name"] == \
        "annotator 2, full video"


def test_parse_fixes_names_and_quotes(refdavis_root: Path) -> None:
    parsed = parse_davis_text_annotations(refdavis_root / "davis_text_annotations/Davis17_annot2.txt")
    assert parsed["classic-car"] == {1: "old car"}
    assert parsed["seqA"] == {1: "caf\u00e9 car", 2: "person"}


def test_video_without_expression(refdavis_root: Path) -> None:
    (refdavis_root / "davis_text_annotations/Davis17_annot1.txt").write_text('seqA 1 "a red car"\n')
    with pytest.raises(InconsistentDataError, match=r"seqB.*Davis17_annot1\.txt"):
        RefDAVIS17Dataset(refdavis_root)


def test_malformed_line_names_file_and_line(refdavis_root: Path) -> None:
    (refdavis_root / "davis_text_annotations/Davis17_annot1.txt").write_text('seqA 1 "car"\nseqB "no id"\n')
    with pytest.raises(InconsistentDataError, match=r"Davis17_annot1\.txt:2"):
        RefDAVIS17Dataset(refdavis_root)


def test_missing_pieces(refdavis_root: Path) -> None:
    with pytest.raises(MissingDataError, match=r"Annotations/480p"):
        RefDAVIS17Dataset(refdavis_root, annotations="Annotations")
    (refdavis_root / "davis_text_annotations/Davis17_annot2_full_video.txt").unlink()
    with pytest.raises(MissingDataError, match="Davis17_annot2_full_video.txt"):
        RefDAVIS17Dataset(refdavis_root, annotation_set=3)
    with pytest.raises(ValueError, match="annotation_set"):
        RefDAVIS17Dataset(refdavis_root, annotation_set=4)
    (refdavis_root / "davis_text_annotations").rename(refdavis_root / "elsewhere")
    with pytest.raises(MissingDataError, match="davis_text_annotations"):
        RefDAVIS17Dataset(refdavis_root)
    assert len(RefDAVIS17Dataset(refdavis_root, text_dir=refdavis_root / "elsewhere")) == 2


def test_missing_split_file(refdavis_root: Path) -> None:
    (refdavis_root / "DAVIS/ImageSets/2017/val.txt").unlink()
    with pytest.raises(MissingDataError, match=r"ImageSets/2017/val\.txt"):
        RefDAVIS17Dataset(refdavis_root)

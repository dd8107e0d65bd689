"""Ref-DAVIS17: DAVIS 2017 plus the referring expressions of two annotators.

Layout under `root` (e.g. `ref-davis/`)::

    DAVIS/JPEGImages/480p/<seq>/*.jpg
    DAVIS/Annotations_unsupervised/480p/<seq>/*.png    the ground truth Ref-DAVIS is scored on
    DAVIS/ImageSets/2017/val.txt
    davis_text_annotations/Davis17_annot1.txt               annotator 1, first frame
    davis_text_annotations/Davis17_annot1_full_video.txt    annotator 1, full video
    davis_text_annotations/Davis17_annot2.txt               annotator 2, first frame
    davis_text_annotations/Davis17_annot2_full_video.txt    annotator 2, full video

Each text line is `<sequence> <object id> "<expression>"`; the annotator-2 files are Latin-1.
Three sequence names are misspelled in those files and are mapped back to DAVIS's names.

The four files are the four evaluation splits, numbered as UniRef's refdavis-val-0..3:
0 = annotator 1 first frame, 1 = annotator 1 full video, 2 = annotator 2 first frame,
3 = annotator 2 full video. The reported score is the mean over the four.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    Expression,
    InconsistentDataError,
    MissingDataError,
    VideoDatasetReader,
    VideoSample,
    first_existing,
    require_dir,
    require_file,
    scan_video_folder,
)
from .davis import find_davis_root, read_davis_split

ANNOTATION_SETS: tuple[tuple[str, str], ...] = (
    ("Davis17_annot1.txt", "annotator 1, first frame"),
    ("Davis17_annot1_full_video.txt", "annotator 1, full video"),
    ("Davis17_annot2.txt", "annotator 2, first frame"),
    ("Davis17_annot2_full_video.txt", "annotator 2, full video"),
)
# Misspellings in the released text files -> the DAVIS sequence names.
_NAME_FIXES = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}
_QUOTES = "\"'\u201c\u201d\u2018\u2019"


def _strip_quotes(text: str) -> str:
    text = text.strip()
    if text and text[0] in _QUOTES:
        text = text[1:]
    if text and text[-1] in _QUOTES:
        text = text[:-1]
    return text.strip()


def parse_davis_text_annotations(path: Path) -> dict[str, dict[int, str]]:
    """Parse one Ref-DAVIS17 text file into `{sequence: {object_id: expression}}`.

    UTF-8 is tried first, then Latin-1 (the annotator-2 files). When an object appears twice,
    the first line wins.
    """
    data = require_file(path, "Ref-DAVIS17 text annotation file").read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    expressions: dict[str, dict[int, str]] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        parts = line.split(maxsplit=2)
        if len(parts) < 3 or not parts[1].isdigit():
            raise InconsistentDataError(
                f"{path}:{line_number}: expected '<sequence> <object id> \"<expression>\"', got {line!r}")
        video = _NAME_FIXES.get(parts[0], parts[0])
        expression = _strip_quotes(parts[2])
        if not expression:
            raise InconsistentDataError(f"{path}:{line_number}: empty expression")
        expressions.setdefault(video, {}).setdefault(int(parts[1]), expression)
    return expressions


class RefDAVIS17Dataset(VideoDatasetReader):
    """Ref-DAVIS17 videos of one annotation set, each with one expression per object.

    Args:
        root: the folder holding `DAVIS/` and `davis_text_annotations/` (or the DAVIS folder).
        split: the DAVIS split ("val" is the benchmark).
        annotation_set: 0..3, see the module docstring.
        text_dir: the `davis_text_annotations` folder when it is elsewhere.
        annotations: ground-truth folder name under DAVIS; "Annotations_unsupervised" (the one
            the official evaluation scores against) by default.
    """

    ANNOTATION_SETS = ANNOTATION_SETS

    def __init__(self, root: Path | str, split: str = "val", annotation_set: int = 0,
                 text_dir: Path | str | None = None, annotations: str = "Annotations_unsupervised",
                 resolution: str = "480p") -> None:
        if annotation_set not in range(len(ANNOTATION_SETS)):
            raise ValueError(f"annotation_set must be 0..3 ({[d for _, d in ANNOTATION_SETS]}), got {annotation_set}")
        root = require_dir(Path(root), "Ref-DAVIS17 root")
        self.davis_root = find_davis_root(root)
        self.split = split
        self.annotation_set = annotation_set
        self.frames_dir = require_dir(self.davis_root / "JPEGImages" / resolution, "DAVIS frame folder")
        annotations_dir = self.davis_root / annotations / resolution
        if not annotations_dir.is_dir():
            raise MissingDataError(
                f"Ref-DAVIS17 ground-truth folder not found: {annotations_dir} (it comes with "
                "DAVIS-2017-Unsupervised-trainval-480p; pass annotations='Annotations' to use the "
                "semi-supervised masks instead)")
        self.annotations_dir = annotations_dir
        if text_dir is not None:
            self.text_dir = require_dir(Path(text_dir), "Ref-DAVIS17 text annotation folder")
        else:
            self.text_dir = first_existing(
                [root / "davis_text_annotations", self.davis_root / "davis_text_annotations",
                 self.davis_root.parent / "davis_text_annotations"],
                "Ref-DAVIS17 text annotation folder davis_text_annotations", is_dir=True)
        self.text_path = self.text_dir / ANNOTATION_SETS[annotation_set][0]
        self._expressions = parse_davis_text_annotations(self.text_path)
        self._keys = read_davis_split(self.davis_root, split)
        for name in self._keys:
            if name not in self._expressions:
                raise InconsistentDataError(f"DAVIS sequence {name!r} has no expression in {self.text_path}")
            require_dir(self.frames_dir / name, f"frame folder of DAVIS sequence {name!r}")

    def _load(self, key: str) -> VideoSample:
        frames, annotations = scan_video_folder(self.frames_dir / key, self.annotations_dir / key, key)
        by_object = self._expressions[key]
        expressions = tuple(Expression(exp_id=str(obj), text=by_object[obj], obj_id=obj) for obj in sorted(by_object))
        return VideoSample(name=key, frame_paths=tuple(frames), expressions=expressions, annotation_paths=annotations,
                           info={"split": self.split, "annotation_set": self.annotation_set,
                                 "annotation_set_name": ANNOTATION_SETS[self.annotation_set][1],
                                 "text_file": self.text_path})

"""``uniref eval`` and ``uniref score``.

::

    uniref eval davis17 --data DAVIS --weights r50.safetensors --config r50 [--split val] [--limit N]
                        [--out DIR] [--device cuda] [--engine fast|reference]
    uniref eval fss1000 --data FSS-1000 --weights w.safetensors --shots 5
    uniref eval ytvos19 --data YouTube-VOS-2019 --weights w.safetensors     # zip for the server
    torchrun --nproc_per_node 8 -m uniref.cli eval refcoco --data refer/data --weights w.safetensors --device cuda
    uniref score davis17 --pred results/ --data DAVIS

Both print the metrics table and write ``metrics.json`` / ``metrics.csv``. Bad input (a missing split
file, an annotation or prediction that is not there) ends the command with one line naming the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from uniref.evaluation.benchmarks import BENCHMARKS

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` and ``score`` to the ``uniref`` command line."""
    names = ", ".join(BENCHMARKS)
    p = subparsers.add_parser(
        "eval", help="run a model on a benchmark: predictions in its layout, zip for servers, metrics",
        description=f"Evaluate on one benchmark ({names}). Resumes: what an earlier run wrote is skipped.")
    _common(p)
    p.add_argument("--weights", required=True, type=Path, help="model weights (.safetensors or official .pth)")
    p.add_argument("--config", default=None,
                   help="model config (r50, swinl, tiny, ...); optional when the weights store it")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: uniref_eval/<benchmark>)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (under torchrun: cuda = local rank)")
    p.add_argument("--engine", choices=("fast", "reference"), default="fast", help="video engine (same masks)")
    p.set_defaults(func=_cmd_eval)

    s = subparsers.add_parser(
        "score", help="score an existing prediction folder against ground truth (no model)",
        description=f"Score predictions of one benchmark ({names}) written by `uniref eval` or another tool.")
    _common(s)
    s.add_argument("--pred", required=True, type=Path,
                   help="prediction folder (what `uniref eval` wrote, or one split's folder / predictions.jsonl)")
    s.add_argument("--out", type=Path, default=None, help="where metrics.json/csv go (default: the --pred folder)")
    s.set_defaults(func=_cmd_score)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("benchmark", choices=sorted(BENCHMARKS), metavar="BENCHMARK", help=", ".join(BENCHMARKS))
    p.add_argument("--data", required=True, type=Path, help="dataset root, as downloaded")
    p.add_argument("--split", default=None,
                   help="one split (default: the paper's; refdavis: val = its 4 annotator splits, val-K one)")
    p.add_argument("--shots", type=int, default=None, help="fss1000: one shot count (default: 1 and 5)")
    p.add_argument("--limit", type=int, default=None, help="only the first N videos / entries of each split")
    p.add_argument("--gt", type=Path, default=None,
                   help="a copy of the benchmark with the split's ground truth (YouTube-VOS, MOSE, Ref-YouTube-VOS)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _cmd_eval(args: argparse.Namespace) -> int:
    from uniref.evaluation.runner import evaluate

    evaluate(args.benchmark, args.data, args.weights, config=args.config, split=args.split, limit=args.limit,
             out=args.out, device=args.device, shots=args.shots, engine=args.engine, gt=args.gt,
             progress=not args.no_progress)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from uniref.evaluation.runner import score

    score(args.benchmark, args.pred, args.data, split=args.split, shots=args.shots, gt=args.gt, limit=args.limit,
          out=args.out, progress=not args.no_progress)
    return 0

"""``uniref demo [--out DIR] [--weights PATH] [--quick]``."""

from __future__ import annotations

import argparse


def _cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from uniref.demo.pipeline import DEMO_SEED, DemoSizes, run_demo

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = DemoSizes.tiny() if args.quick else DemoSizes()
    run_demo(args.out, args.weights, seed=DEMO_SEED if args.seed is None else args.seed, sizes=sizes,
             device=args.device)
    return 0


def register(subparsers) -> None:
    """Add the ``demo`` subcommand to the ``uniref`` CLI."""
    p = subparsers.add_parser(
        "demo", help="run the bundled demo model on a generated held-out world (all four tasks, offline)",
        description="Generate a small held-out synthetic world, run referring image segmentation, few-shot "
                    "segmentation, video object segmentation and referring video object segmentation with the "
                    "bundled demo model, write overlays (PNG, mp4, GIF) and print a metrics table. The demo "
                    "model knows only the synthetic world; for real images use the released UniRef++ weights.",
    )
    p.add_argument("--out", default="uniref-demo", help="output folder (default: ./uniref-demo)")
    p.add_argument("--weights", default=None, help="demo weights (default: the bundled uniref/assets/demo.safetensors)")
    p.add_argument("--seed", type=int, default=None, help="seed of the held-out world (default: the demo's)")
    p.add_argument("--quick", action="store_true", help="a reduced world (a few entries per task)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=_cmd_demo)

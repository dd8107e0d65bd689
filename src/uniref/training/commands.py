"""``uniref train CONFIG [key=value ...] [--resume] [--out DIR]``."""

from __future__ import annotations

import argparse

from uniref.training.stages import available_stages

_EPILOG = """\
configs: {stages}; or a JSON file written by a previous run (OUT/config.json).

examples:
  uniref train finetune init_weights=video-joint_r50.safetensors datasets.custom.root=my_data --out runs/ft
  uniref train finetune init_weights=W model=tiny datasets.custom.kind=davis-folders \\
      datasets.custom.task=vos datasets.custom.root=my_videos
  uniref train video_vos_rvos data_root=/data init_weights=stage1b.safetensors max_iter=180000 optim.steps=150000
  torchrun --nproc_per_node 8 -m uniref.cli train image_ris data_root=/data --out runs/ris

keys: any field of the config, dotted: optim.base_lr=1e-4, datasets.<name>.root=PATH,
datasets.<name>.options.split=train, model.num_queries=100, model.text.freeze=true, bf16=true,
grad_checkpointing=true, checkpoint_period=1000, num_workers=8.
"""


def _cmd_train(args: argparse.Namespace) -> int:
    from uniref.training.engine import run_training

    result = run_training(args.config, list(args.overrides), args.out, resume=args.resume,
                          progress=not args.no_progress)
    if result.final_weights is not None:
        print(f"trained to iteration {result.iteration}; weights: {result.final_weights}")
    else:
        print(f"stopped at iteration {result.iteration}; checkpoint: {result.checkpoint}")
    return 0


def register(subparsers) -> None:
    """Add the ``train`` subcommand to the ``uniref`` CLI."""
    p = subparsers.add_parser(
        "train", help="train or fine-tune (one process or under torchrun)",
        description="Train UniRef++ with a named stage config and key=value overrides.",
        epilog=_EPILOG.format(stages=", ".join(available_stages())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help=f"a named config ({', '.join(available_stages())}) or a config JSON")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config changes")
    p.add_argument("--out", help="output folder (default output/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last_checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

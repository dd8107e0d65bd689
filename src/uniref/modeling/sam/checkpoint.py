"""Checkpoints of the UniRef-SAM family.

Two sources are supported, both strict by default with a readable report on failure:

(a) an official UniRef-SAM state dict (``{"model": ...}`` or raw; keys ``model.sam.*``,
    ``model.text_encoder.*``, ``model.resizer.*``, ``model.value_encoder.*``,
    ``model.fusion_module.*``), or one of ours (our names, no ``model.`` prefix);
(b) a plain SAM checkpoint as Meta ships it (``sam_vit_b_01ec64.pth``: ``image_encoder.*``,
    ``prompt_encoder.*``, ``mask_decoder.*``), optionally plus a UniRef++ checkpoint from which the
    text encoder and resizer are taken — the starting point for training UniRef-SAM.

Files are read with ``torch.load(weights_only=True)`` (or safetensors); nothing downloads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from uniref.checkpoint import CheckpointError, LoadReport, strip_wrappers

# (ours, official) name prefixes of the UniRef-SAM meta-architecture (spec section 12).
SAM_OFFICIAL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("sam.", "model.sam."),
    ("text_encoder.", "model.text_encoder."),
    ("resizer.", "model.resizer."),
    ("mask_encoder.", "model.value_encoder."),
    ("fusion.", "model.fusion_module."),
)
# Constant buffers that some transformers versions save; never required, dropped on load.
OPTIONAL_SUFFIXES: tuple[str, ...] = ("embeddings.position_ids", "embeddings.token_type_ids")
SAM_PARTS: tuple[str, ...] = ("image_encoder.", "prompt_encoder.", "mask_decoder.")

StateSource = str | os.PathLike | dict[str, Tensor]


def sam_ours_to_official(name: str) -> str:
    for ours, official in SAM_OFFICIAL_PREFIXES:
        if name.startswith(ours):
            return official + name[len(ours):]
    raise KeyError(f"no official UniRef-SAM name for {name!r}")


def sam_official_to_ours(name: str) -> str:
    for ours, official in SAM_OFFICIAL_PREFIXES:
        if name.startswith(official):
            return ours + name[len(official):]
    raise KeyError(name)


def to_official_sam_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our UniRef-SAM state dict with the official names."""
    return {sam_ours_to_official(k): v for k, v in state_dict.items()}


def read_any_state_dict(source: StateSource) -> dict[str, Tensor]:
    """A state dict from a dict, a ``.safetensors`` file or a ``.pth`` (raw or ``{"model": ...}``)."""
    if isinstance(source, dict):
        state = source["model"] if isinstance(source.get("model"), dict) else source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            try:
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as exc:  # pickle errors, truncated zips, blocked globals
                raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
            state = obj["model"] if isinstance(obj, dict) and isinstance(obj.get("model"), dict) else obj
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{_label(source)} holds no state dict (expected a dict of tensors or {{'model': ...}})")
    return strip_wrappers(state)


def is_plain_sam_state_dict(state: dict[str, Tensor]) -> bool:
    """Whether ``state`` is Meta's SAM checkpoint (only ``image_encoder.*``, ``prompt_encoder.*`` and
    ``mask_decoder.*`` keys, optionally under ``sam.``) rather than a UniRef-SAM one (which also holds the
    text encoder, the mask encoder and UniFusion)."""
    return bool(state) and all(k.removeprefix("sam.").startswith(SAM_PARTS) for k in state)


@dataclass
class SamLoadReport(LoadReport):
    """:class:`~uniref.checkpoint.LoadReport` plus the parts no file provided (kept at initialisation)."""

    not_loaded: list[str] = field(default_factory=list)


def load_uniref_sam_checkpoint(model: nn.Module, source: StateSource, *, strict: bool = True) -> SamLoadReport:
    """Load an official UniRef-SAM state dict (or one of ours) into a :class:`UniRefSAM`.

    Official names (``model.`` prefix) are mapped with :data:`SAM_OFFICIAL_PREFIXES`; a dict without
    that prefix is taken to be in our names. Strict: any missing, unexpected or shape-mismatched key
    raises :class:`CheckpointError` with the full report (and nothing is loaded); ``strict=False``
    loads what fits and returns the report.
    """
    state = read_any_state_dict(source)
    official = any(k.startswith("model.") for k in state)
    report = SamLoadReport()
    mapped: dict[str, Tensor] = {}
    for name, value in state.items():
        if name.endswith(OPTIONAL_SUFFIXES):
            continue
        if official:
            try:
                mapped[sam_official_to_ours(name)] = value
            except KeyError:
                report.unexpected.append(name)
        else:
            mapped[name] = value
    own = model.state_dict()
    usable = _compare(own, mapped, list(own), report, sam_ours_to_official if official else None)
    if strict and not report.ok:
        raise CheckpointError(report.format(_label(source)))
    model.load_state_dict(usable, strict=False)
    return report


def load_sam_weights(
    model: nn.Module,
    sam_checkpoint: StateSource,
    *,
    uniref_checkpoint: StateSource | None = None,
    strict: bool = True,
) -> SamLoadReport:
    """Start a UniRef-SAM from Meta's SAM weights (and optionally a UniRef++ text encoder).

    Args:
        model: a :class:`UniRefSAM` (the SAM checkpoint must be of the same size, at 1024 px).
        sam_checkpoint: Meta's ``sam_vit_{b,l,h}_*.pth`` (keys ``image_encoder.*``, ``prompt_encoder.*``,
            ``mask_decoder.*``; a ``sam.`` prefix or ``{"model": ...}`` wrapping is accepted too).
        uniref_checkpoint: an official UniRef++ ``.pth`` or our ``.safetensors``; its ``text_encoder.*``
            and ``resizer.*`` are loaded (everything else in it is ignored on purpose).
        strict: raise :class:`CheckpointError` (loading nothing) if any key of the loaded parts is
            missing, unexpected or of another shape.
    Returns:
        the report; ``report.not_loaded`` names the top-level parts that keep their initialisation
        (the mask encoder and fusion always; the text encoder and resizer without ``uniref_checkpoint``).
    """
    report = SamLoadReport()
    own = model.state_dict()
    sam_state: dict[str, Tensor] = {}
    for name, value in read_any_state_dict(sam_checkpoint).items():
        name = name.removeprefix("sam.")
        if name.startswith(SAM_PARTS):
            sam_state["sam." + name] = value
        else:
            report.unexpected.append(name)
    usable = _compare(own, sam_state, [k for k in own if k.startswith("sam.")], report)
    loaded = {"sam"}
    if uniref_checkpoint is not None:
        text_state: dict[str, Tensor] = {}
        for name, value in read_any_state_dict(uniref_checkpoint).items():
            for prefix in ("text_encoder.", "resizer."):
                # Official UniRef++ keys are top-level; tolerate a wrapping prefix in front.
                at = name.find(prefix)
                if at == 0 or (at > 0 and name[at - 1] == "."):
                    if not name.endswith(OPTIONAL_SUFFIXES):
                        text_state[name[at:]] = value
                    break
        if not text_state:
            report.problems.append(f"{_label(uniref_checkpoint)} holds no text_encoder.* / resizer.* weights")
        wanted = [k for k in own if k.startswith(("text_encoder.", "resizer."))]
        usable.update(_compare(own, text_state, wanted, report))
        loaded |= {"text_encoder", "resizer"}
    report.not_loaded = sorted({k.split(".", 1)[0] for k in own} - loaded)
    if strict and not report.ok:
        label = _label(sam_checkpoint) + ("" if uniref_checkpoint is None else f" + {_label(uniref_checkpoint)}")
        raise CheckpointError(report.format(label))
    model.load_state_dict(usable, strict=False)
    return report


def _compare(
    own: dict[str, Tensor],
    state: dict[str, Tensor],
    expected: list[str],
    report: LoadReport,
    display: Callable[[str], str] | None = None,
) -> dict[str, Tensor]:
    """Record missing / unexpected / mismatched keys of ``state`` in ``report``; return the usable tensors."""
    show = display or (lambda k: k)
    for k in expected:
        if k not in state and not k.endswith(OPTIONAL_SUFFIXES):
            report.missing.append(show(k))
    usable: dict[str, Tensor] = {}
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(_safe(show, k))
        elif tuple(own[k].shape) != tuple(v.shape):
            report.mismatched.append(f"{show(k)}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}")
        else:
            usable[k] = v.to(dtype=own[k].dtype)
    return usable


def _safe(show: Callable[[str], str], name: str) -> str:
    try:
        return show(name)
    except KeyError:
        return name


def _label(source: StateSource) -> str:
    return "<state dict>" if isinstance(source, dict) else str(source)

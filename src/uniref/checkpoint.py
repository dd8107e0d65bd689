"""Checkpoints: the official state-dict layout, strict loading with a readable report, conversion.

Our module tree is flatter than the official one (no ``detr.detr`` nesting, no duplicated head
lists). The mapping between the two is a table of name prefixes, so every official key maps to
exactly one of ours and back. Three official keys are handled on purpose:

* ``detr.detr.transformer.decoder.{class_embed,bbox_embed}.*`` are storage aliases of
  ``detr.detr.{class_embed,bbox_embed}.*`` (the Deformable-DETR decoder keeps references to the head
  lists); on load they must equal the primary copy and are then dropped; on export they are written.
* ``criterion._iter`` is a BoxInst warm-up counter with no effect at inference; dropped on load,
  written as ``[0.]`` on export.
* ``text_encoder.embeddings.position_ids`` is a constant buffer that some transformers versions save;
  dropped on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

# (ours, official), for the UniRef++ meta-architecture.
OFFICIAL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("backbone.", "detr.detr.backbone.0.backbone."),
    ("input_proj.", "detr.detr.input_proj."),
    ("transformer.", "detr.detr.transformer."),
    ("class_embed.", "detr.detr.class_embed."),
    ("bbox_embed.", "detr.detr.bbox_embed."),
    ("query_embed.", "detr.detr.query_embed."),
    ("controller.", "detr.controller."),
    ("fusion.", "detr.fusion_module."),
    ("pixel_decoder.", "detr."),
    ("text_encoder.", "text_encoder."),
    ("resizer.", "resizer."),
    ("mask_encoder.", "value_encoder."),
)
ALIAS_PREFIXES: tuple[tuple[str, str], ...] = (
    ("detr.detr.transformer.decoder.class_embed.", "detr.detr.class_embed."),
    ("detr.detr.transformer.decoder.bbox_embed.", "detr.detr.bbox_embed."),
)
IGNORED_OFFICIAL_KEYS: tuple[str, ...] = ("criterion._iter", "text_encoder.embeddings.position_ids")


class CheckpointError(RuntimeError):
    """A checkpoint that does not fit the model; the message is the full report."""


def ours_to_official(name: str) -> str:
    for ours, official in OFFICIAL_PREFIXES:
        if name.startswith(ours):
            return official + name[len(ours):]
    raise KeyError(f"no official name for parameter {name!r}")


def official_to_ours(name: str) -> str | None:
    """Our name for an official key; None for keys that are handled on purpose (aliases, ignored)."""
    if name in IGNORED_OFFICIAL_KEYS or any(name.startswith(a) for a, _ in ALIAS_PREFIXES):
        return None
    best = None
    for ours, official in OFFICIAL_PREFIXES:
        if name.startswith(official) and (best is None or len(official) > len(best[1])):
            best = (ours, official)
    if best is None:
        raise KeyError(name)
    return best[0] + name[len(best[1]):]


def to_official_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict in the official layout, with the aliases and ``criterion._iter`` added."""
    out = {ours_to_official(k): v for k, v in state_dict.items() if not _is_optional(k)}
    for alias, primary in ALIAS_PREFIXES:
        for k in [k for k in out if k.startswith(primary)]:
            out[alias + k[len(primary):]] = out[k]
    out["criterion._iter"] = torch.zeros(1)
    return out


def from_official_state_dict(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Map official keys to ours. Returns the mapped dict and a list of problems (unmappable keys,
    aliases that differ from their primary copy)."""
    problems: list[str] = []
    state_dict = strip_wrappers(state_dict)
    out: dict[str, Tensor] = {}
    for name, value in state_dict.items():
        for alias, primary in ALIAS_PREFIXES:
            if name.startswith(alias):
                twin = primary + name[len(alias):]
                other = state_dict.get(twin)
                if other is None:
                    problems.append(f"alias {name} has no primary {twin}")
                elif other is not value and not value.is_meta and not torch.equal(other, value):
                    problems.append(f"alias {name} differs from {twin}")
        try:
            ours = official_to_ours(name)
        except KeyError:
            problems.append(f"unexpected official key {name}")
            continue
        if ours is not None:
            out[ours] = value
    return out, problems


def strip_wrappers(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    out = {}
    for k, v in state_dict.items():
        for p in ("module.", "_orig_mod."):
            while k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.problems)

    def format(self, path: str | os.PathLike, limit: int = 20) -> str:
        lines = [f"checkpoint {path} does not match the model:"]
        for title, items in (
            ("missing from the checkpoint", self.missing),
            ("unexpected in the checkpoint", self.unexpected),
            ("shape mismatch", self.mismatched),
            ("other problems", self.problems),
        ):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines += [f"    {x}" for x in items[:limit]]
                if len(items) > limit:
                    lines.append(f"    ... and {len(items) - limit} more")
        return "\n".join(lines)


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, Tensor], bool]:
    """Read a checkpoint file. Returns (state_dict, is_official_layout).

    ``.safetensors`` files are ours; ``.pth``/``.pt``/``.bin`` are official (a raw state dict or one
    wrapped in ``{"model": ...}``), read with ``weights_only=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        verify_sha256(path)
        return load_file(str(path)), False
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip files, blocked globals
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict (expected a dict of tensors or {{'model': ...}})")
    return obj, True


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, strict: bool = True) -> LoadReport:
    """Load an official ``.pth`` or one of our ``.safetensors`` into ``model``.

    Strict by default: any missing, unexpected or shape-mismatched key raises :class:`CheckpointError`
    with the full report. With ``strict=False`` the matching tensors are loaded and the report returned.
    """
    state, official = read_state_dict(path)
    report = LoadReport()
    if official:
        state, report.problems = from_official_state_dict(state)
    else:
        state = strip_wrappers(state)
    own = model.state_dict()
    for k in own:
        if k not in state and not _is_optional(k):
            report.missing.append(_display(k, official))
    usable = {}
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(_display(k, official))
        elif tuple(own[k].shape) != tuple(v.shape):
            report.mismatched.append(
                f"{_display(k, official)}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            )
        else:
            usable[k] = v.to(dtype=own[k].dtype)
    if strict and not report.ok:
        raise CheckpointError(report.format(path))
    model.load_state_dict(usable, strict=False)
    return report


def _is_optional(name: str) -> bool:
    return name.endswith("embeddings.position_ids")


def _display(name: str, official: bool) -> str:
    if not official:
        return name
    try:
        return ours_to_official(name)
    except KeyError:
        return name


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: Path) -> None:
    """Check ``<file>.sha256`` when it exists beside the weights."""
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        expected = sidecar.read_text().split()[0].strip()
        actual = file_sha256(path)
        if actual != expected:
            raise CheckpointError(f"sha256 of {path} is {actual}, but {sidecar} says {expected}: the file is corrupt")


def save_safetensors(
    state_dict: dict[str, Tensor], path: str | os.PathLike, *, metadata: dict[str, str] | None = None
) -> str:
    """Write our format atomically plus ``<file>.sha256``; returns the hash."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata or {})
        digest = file_sha256(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    sidecar = path.with_name(path.name + ".sha256")
    tmp_sidecar = sidecar.with_name("." + sidecar.name + ".tmp")
    tmp_sidecar.write_text(f"{digest}  {path.name}\n")
    os.replace(tmp_sidecar, sidecar)
    return digest


def convert_official(src: str | os.PathLike, dst: str | os.PathLike, model: nn.Module, config_json: str) -> str:
    """Convert an official ``.pth`` to our ``.safetensors`` after a strict check against ``model``."""
    load_checkpoint(model, src, strict=True)
    return save_safetensors(model.state_dict(), dst, metadata={"uniref_config": config_json, "format": "uniref"})


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def config_from_checkpoint(path: str | os.PathLike) -> dict | None:
    """The config stored in one of our safetensors files, if any."""
    if Path(path).suffix != ".safetensors":
        return None
    meta = read_metadata(path)
    return json.loads(meta["uniref_config"]) if "uniref_config" in meta else None

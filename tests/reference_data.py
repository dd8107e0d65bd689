"""Access to the data produced by the official implementation (``../shared/reference``).

Tests that need it call :func:`reference_dir`, which skips with a plain reason when the directory is
absent (CI always has it). The directory can be moved with ``UNIREF_REFERENCE_DIR``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    path = Path(os.environ.get("UNIREF_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))
    if not (path / "README.md").is_file():
        pytest.skip(
            f"official reference data not found at {path} (set UNIREF_REFERENCE_DIR); "
            "these parity tests need the tensors produced by the official UniRef++ code"
        )
    return path


class Golden:
    """One reference ``.safetensors`` file split by prefix, weights cast to float32."""

    def __init__(self, path: Path):
        self.path = path
        tensors = load_file(str(path))
        self.weights: dict[str, torch.Tensor] = {}
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        for name, t in tensors.items():
            prefix, _, rest = name.partition(".")
            if prefix == "weights":
                self.weights[rest] = t.float() if t.is_floating_point() else t
            elif prefix == "inputs":
                self.inputs[rest] = t
            else:  # outputs, outputs_fp32attn, ...
                self.outputs[name] = t
        sidecar = path.with_suffix(".json")
        self.meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}

    def weights_under(self, prefix: str) -> dict[str, torch.Tensor]:
        """The weights whose names start with ``prefix``, with the prefix removed."""
        return {k[len(prefix):]: v for k, v in self.weights.items() if k.startswith(prefix)}

    def out(self, name: str) -> torch.Tensor:
        return self.outputs[name if name.startswith("outputs") else "outputs." + name]


_CACHE: dict[str, Golden] = {}


def golden(name: str) -> Golden:
    """Load ``<reference>/<name>.safetensors`` once per test session."""
    if name not in _CACHE:
        path = reference_dir() / f"{name}.safetensors"
        if not path.is_file():
            pytest.skip(f"reference file {path} is absent")
        _CACHE[name] = Golden(path)
    return _CACHE[name]


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0

"""Run by test_ddp.py under ``torch.distributed.run``: a few DDP steps of the tiny RVOS stage on CPU (gloo).

Usage: ddp_worker.py OUT VOCAB STEPS. Rank 0 writes OUT/ddp_weights.pt; the JSON-lines log has the loss and the
gradient norm of every step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from training_fixtures import ddp_stage
from uniref.training.engine import Trainer, init_distributed


def main() -> None:
    out, vocab, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    assert info.world_size == 2 and dist.get_backend() == "gloo"
    trainer = Trainer(ddp_stage(vocab, steps), out / "run", progress=False, dist_info=info)
    trainer.model.resizer.dropout.p = 0.0  # the resizer's dropout is fixed at 0.1 in the architecture
    trainer.train()
    if info.is_main:
        torch.save(trainer.model.state_dict(), out / "ddp_weights.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

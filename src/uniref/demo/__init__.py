"""``uniref demo``: the bundled small model on a held-out synthetic world, all four tasks, offline.

The bundled model knows only the synthetic world (coloured shapes); for real images load the released
UniRef++ checkpoints (``uniref convert`` + ``uniref.build_model``).
"""

from uniref.demo.pipeline import DEMO_SEED, DemoReport, DemoSizes, run_demo
from uniref.demo.weights import DEMO_WEIGHTS, build_demo_model, export_demo_weights, load_demo_weights

__all__ = ["DEMO_SEED", "DEMO_WEIGHTS", "DemoReport", "DemoSizes", "build_demo_model", "export_demo_weights",
           "load_demo_weights", "run_demo"]

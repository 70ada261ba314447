"""``zorgpad synth``: a deterministic generator of realistic national claims deliveries.

Entry point: :func:`generate_delivery` with a :class:`SynthConfig`. See ``delivery.py`` for the
layout, ``paths/`` for the per-bundle care paths and ``background.py`` for calibrated background
care.
"""

from transforms.synth.config import BUNDLES, BundleEffect, FaultRates, SynthConfig
from transforms.synth.delivery import generate_delivery, truth_dir

__all__ = ["BUNDLES", "BundleEffect", "FaultRates", "SynthConfig", "generate_delivery", "truth_dir"]

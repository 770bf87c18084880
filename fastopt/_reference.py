"""Pure-NumPy twins of every kernel in :mod:`fastopt._kernels`.

Same names, same arguments, same outputs (written into the same output arrays); each mirrors its compiled
twin step for step so tests/test_parity.py can compare them after identical inputs. Slow by design: clarity
over speed.
"""
from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- closed form

# ---------------------------------------------------------------- optimizers

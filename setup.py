"""Build script: lists the compiled extensions; all metadata lives in pyproject.toml."""
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

CSRC = "csrc"
# One extension, one Cython module over the plain-C kernels in csrc/.
C_SOURCES = sorted(os.path.join(CSRC, f) for f in os.listdir(CSRC) if f.endswith(".c"))

if sys.platform == "win32":
    compile_args = ["/O2"]
else:
    # No -ffast-math: it would break the non-finite checks and bit-reproducibility. No contraction into fused
    # multiply-adds either (GCC's default where the target has FMA, e.g. aarch64): the kernels round every
    # product and sum as their NumPy twins do, on every target and in every run-time dispatched variant.
    # -fno-wrapv undoes the -fwrapv that CPython's own build flags (which setuptools passes on) add: with
    # signed overflow defined, GCC cannot simplify the kernels' ptrdiff_t index arithmetic, and the epoch ran
    # 5-25% slower (measured). The kernels never rely on signed wraparound; meson-built NumPy and SciPy do not
    # use -fwrapv either.
    compile_args = ["-O3", "-fno-wrapv", "-fno-math-errno", "-ffp-contract=off", "-Wno-unused-function"]

extensions = [
    Extension(
        "fastopt._kernels",
        sources=["fastopt/_kernels.pyx", *C_SOURCES],
        include_dirs=[CSRC, np.get_include()],
        depends=[os.path.join(CSRC, f) for f in os.listdir(CSRC) if f.endswith(".h")],
        extra_compile_args=compile_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    )
)

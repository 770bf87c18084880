"""fastopt: linear models fitted exactly, or with the optimizers of deep learning, in typed Cython over C."""
from fastopt import optim
from fastopt.linear_model import LinearRegressor

__version__ = "0.1.0"
__all__ = ["LinearRegressor", "optim", "__version__"]

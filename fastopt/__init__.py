"""fastopt: linear models fitted exactly, or with the optimizers of deep learning, in typed Cython over C."""
from fastopt import functions, landscape, optim, plotting
from fastopt.linear_model import LinearRegressor
from fastopt.minimize import minimize

__version__ = "0.1.0"
__all__ = ["LinearRegressor", "__version__", "functions", "landscape", "minimize", "optim", "plotting"]

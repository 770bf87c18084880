"""Iterative least squares: minibatch epochs over the fused compiled kernels.

SCAFFOLD: replaced by the optimizer work (issue 3).
"""
SOLVERS: dict = {}

"""Closed-form least squares: blockwise sufficient statistics, Cholesky, and a stable QR/SVD fallback.

SCAFFOLD: replaced by the closed-form work (issue 2).
"""
SOLVERS: dict = {}

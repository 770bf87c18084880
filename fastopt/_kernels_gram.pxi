# Closed-form kernels (sufficient statistics); included by _kernels.pyx.

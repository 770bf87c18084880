# Optimizer kernels (step rules, fused epoch); included by _kernels.pyx.

#!/usr/bin/env bash
# Build the compiled kernels with AddressSanitizer + UndefinedBehaviorSanitizer in a scratch directory and run
# the kernel tests against that build. Usage: tools/sanitize.sh [SCRATCH_DIR] [PYTEST_ARGS...]
# Needs GCC or Clang with the sanitizer runtimes; the Python used (PYTHON, default python) must have the
# test dependencies. The installed fastopt is not touched: the scratch build comes first on PYTHONPATH.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
scratch="${1:-$(mktemp -d)}"
shift || true
python="${PYTHON:-python}"
cc="${CC:-gcc}"

mkdir -p "$scratch/src"
# The working tree's sources (tracked and new files), without build products.
(cd "$repo" && git ls-files --cached --others --exclude-standard -z | grep -zvE '\.(so|c)$|^fastopt/_kernels\.c$' \
  | xargs -0 tar cf - ) | tar xf - -C "$scratch/src"
cp "$repo"/csrc/*.c "$scratch/src/csrc/"

san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
(cd "$scratch/src" && CC="$cc" CFLAGS="$san" LDFLAGS="$san" "$python" setup.py -q build_ext --inplace --force)

# The interpreter itself is not instrumented, so the ASan runtime must be loaded first; leak checking is off
# (CPython keeps objects alive until exit by design).
runtime="$("$cc" -print-file-name=libasan.so)"
export LD_PRELOAD="$runtime${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$scratch/src${PYTHONPATH:+:$PYTHONPATH}"
cd "$scratch/src"
"$python" -c "import fastopt, sys; sys.exit(0 if fastopt.__file__.startswith('$scratch/src') else 'not the scratch build')"
"$python" -m pytest -q -p no:cacheprovider -p no:randomly \
  tests/test_kernel_boundary.py tests/test_parity.py tests/test_parity_optim.py tests/test_epoch_threads.py \
  tests/test_kernels_interface.py tests/test_closed_form.py tests/test_reliability.py tests/test_interrupts.py \
  tests/test_sparse_closed_form.py tests/test_sparse_epoch.py tests/test_csr_pipe.py tests/test_sparse.py \
  tests/test_closed_form_memory.py "$@"

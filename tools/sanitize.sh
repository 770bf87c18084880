#!/usr/bin/env bash
# Build the compiled kernels with AddressSanitizer + UndefinedBehaviorSanitizer in a scratch directory and run
# the kernel tests against that build. Usage: tools/sanitize.sh [SCRATCH_DIR] [PYTEST_ARGS...]
# With SANITIZER=thread, ThreadSanitizer instead, on the tests of the two-thread epochs (the dense team, the
# piped CSR epoch, interrupts) and of concurrent fits: a data race in fastopt's code fails the run
# (tools/tsan.supp: OpenBLAS's own threads, which TSan cannot follow, are not reported).
# Needs GCC or Clang with the sanitizer runtimes; the Python used (PYTHON, default python) must have the
# test dependencies. The installed fastopt is not touched: the scratch build comes first on PYTHONPATH.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
scratch="${1:-$(mktemp -d)}"
shift || true
python="${PYTHON:-python}"
cc="${CC:-gcc}"
mode="${SANITIZER:-address}"
case "$mode" in address | thread) ;; *) echo "SANITIZER must be address or thread, not '$mode'" >&2; exit 2 ;; esac

mkdir -p "$scratch/src"
# The working tree's sources (tracked and new files), without build products.
(cd "$repo" && git ls-files --cached --others --exclude-standard -z | grep -zvE '\.(so|c)$|^fastopt/_kernels\.c$' \
  | xargs -0 tar cf - ) | tar xf - -C "$scratch/src"
cp "$repo"/csrc/*.c "$scratch/src/csrc/"

if [ "$mode" = thread ]; then
  san="-fsanitize=thread -fno-omit-frame-pointer -g -O1"
  lib=libtsan.so
  # A report makes the process exit with 66 once the tests end (TSan's exitcode), so the run fails. TSan cannot
  # start threads in a child forked from a threaded process: the fork test is left out.
  export TSAN_OPTIONS="halt_on_error=0:report_signal_unsafe=0:exitcode=66:suppressions=$repo/tools/tsan.supp"
  tests=(-k "not forked_child"
    tests/test_epoch_threads.py tests/test_csr_pipe.py tests/test_sparse_epoch.py tests/test_interrupts.py
    tests/test_closed_form_tail.py
    tests/test_closed_form.py::test_concurrent_fits_restore_the_blas_thread_limit
    tests/test_closed_form.py::test_segments_and_threads_do_not_change_the_answer
    tests/test_reliability.py::test_concurrent_segmented_closed_form_fits_restore_blas_threads
    tests/test_iterative.py::test_same_random_state_is_bit_identical_also_across_threads
    tests/test_robust.py::test_newton_bits_do_not_depend_on_concurrent_fits
    tests/test_sparse_closed_form.py::test_concurrent_sparse_fits_are_bit_identical)
else
  san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
  lib=libasan.so
  # Leak checking is off (CPython keeps objects alive until exit by design).
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  tests=(
    tests/test_kernel_boundary.py tests/test_parity.py tests/test_parity_optim.py tests/test_epoch_threads.py
    tests/test_kernels_interface.py tests/test_closed_form.py tests/test_reliability.py tests/test_interrupts.py
    tests/test_sparse_closed_form.py tests/test_sparse_epoch.py tests/test_csr_pipe.py tests/test_sparse.py
    tests/test_closed_form_memory.py)
fi
(cd "$scratch/src" && CC="$cc" CFLAGS="$san" LDFLAGS="$san" "$python" setup.py -q build_ext --inplace --force)

# The interpreter itself is not instrumented, so the sanitizer's runtime must be loaded first.
runtime="$("$cc" -print-file-name="$lib")"
export LD_PRELOAD="$runtime${LD_PRELOAD:+:$LD_PRELOAD}"
export PYTHONPATH="$scratch/src${PYTHONPATH:+:$PYTHONPATH}"
cd "$scratch/src"
"$python" -c "import fastopt, sys; sys.exit(0 if fastopt.__file__.startswith('$scratch/src') else 'not the scratch build')"
"$python" -m pytest -q -p no:cacheprovider -p no:randomly "${tests[@]}" "$@"

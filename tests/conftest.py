"""Test-session settings that must be in place before torch loads."""

import os

# MKL picks CPU-specific FFT/GEMM code paths; the parity fixtures were made on another CPU, and the
# log-mel check (atol 1e-5) only holds with MKL's conditional-numerical-reproducibility mode.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")

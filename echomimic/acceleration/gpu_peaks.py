"""The GPUs `echolive flops` knows, by their dense fp16 tensor-core peak (no torch needed: the CLI lists them)."""

from __future__ import annotations

GPU_PEAK_TFLOPS: dict[str, float] = {
    "4090": 165.2,
    "L40S": 362.1,
    "A100": 312.0,
    "H100": 989.4,
    "H200": 989.4,
}
"""TFLOP/s with fp32 accumulation, from the vendors' datasheets (SXM parts for A100, H100 and H200); an RTX 4090 runs
fp16 with fp32 accumulation at half its fp16-accumulation rate."""

HALF_PEAK = 0.5
"""The share of peak the profiles are planned for: what a well-fed UNet reaches, not a bound."""

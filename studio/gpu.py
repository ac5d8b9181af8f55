"""Kept for old imports: everything lives in `studio.hardware` now."""

from .hardware import ON_ZERO_GPU, Hardware, device_summary, gpu, hardware, on_cpu, on_space, on_zero_gpu

__all__ = ["ON_ZERO_GPU", "Hardware", "device_summary", "gpu", "hardware", "on_cpu", "on_space", "on_zero_gpu"]

"""The `gpu:` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

from telegraf_llm_input.config.loader import ConfigError
from telegraf_llm_input.schema.gpu import LLM_GPU

Backend = Literal["auto", "nvidia", "amd", "intel", "apple"]


@dataclass
class GpuConfig:
    enabled: bool | Literal["auto"] = "auto"
    """`auto`: use every backend that finds hardware, one info line when none does; `true`: a warning when none
    does; `false`: no GPU source, no GPU memory per process, no energy per token."""
    backends: list[Backend] = field(default_factory=lambda: ["auto"])
    """`auto` (every backend that finds hardware) or a list of `nvidia` (NVML), `amd` (amdgpu sysfs), `intel`
    (i915/xe sysfs), `apple` (`ioreg`, macOS). A backend named here is tried even where `auto` would skip it."""
    sysfs_root: str = "/sys"
    """Where sysfs is (AMD and Intel read `class/drm/card*/device/`)."""
    indices: list[int] | None = None
    """Only these NVIDIA GPU indices, e.g. `[0, 1]`. Default: all."""
    nvidia_smi_compat: bool = False
    """Also emit `nvidia_smi` with the measurement, tags, field names and integer types of Telegraf's
    `inputs.nvidia_smi`, so its dashboards keep working (fields it has that NVML cannot give cheaply, e.g.
    `fbc_stats_*`, retired pages, are not emitted)."""
    exclude: list[str] = field(default_factory=list)
    """`llm_gpu` field-name globs to leave out, e.g. `[pcie_*, encoder_util, decoder_util]`, on every backend; on
    NVIDIA the NVML calls only they need are not made (each PCIe reading samples ~20 ms in the driver).
    `gpu_lost` is always written."""

    def __post_init__(self) -> None:
        names = [f.name for f in LLM_GPU.fields if f.name != "gpu_lost"]
        for glob in self.exclude:
            if not any(fnmatchcase(name, glob) for name in names):
                raise ConfigError("exclude", f"{glob!r} matches no llm_gpu field (docs/metrics.md lists them)")
        if not self.backends:
            raise ValueError("backends must name at least one backend (or `auto`)")
        if "auto" in self.backends and len(self.backends) > 1:
            raise ValueError("backends: `auto` already means every backend; list backends instead of mixing")

    def wants(self, vendor: str) -> bool:
        """Whether `vendor`'s backend should be tried (explicitly named, or `auto`)."""
        return "auto" in self.backends or vendor in self.backends

    def explicit(self, vendor: str) -> bool:
        return vendor in self.backends

    def keeps(self, name: str) -> bool:
        """Whether `llm_gpu` field `name` is written (`exclude` does not name it)."""
        return name == "gpu_lost" or not any(fnmatchcase(name, glob) for glob in self.exclude)

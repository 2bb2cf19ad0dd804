"""Where and in what precision a trial computes: the device Ray gave it, autocast, and fp16's gradient scaler.

``settings.device`` (``auto | cpu | cuda``) and ``settings.precision`` (``fp32 | bf16 | fp16``) are settings of both
built-in trainables. ``auto`` picks the GPU when the trial has one: inside a Ray trial, when Ray assigned it a GPU
(``resources.gpu > 0``; Ray then sets ``CUDA_VISIBLE_DEVICES`` so that ``cuda`` is that GPU); outside Ray, when torch
sees one. Everything else reads the device from here, so that no code path hard-codes ``cpu``.

fp16 runs on the CPU too: torch 2.13 autocasts to fp16 on the CPU and its ``GradScaler`` works there. So a sweep
file written for GPUs runs unchanged as a smoke test on a laptop, and the scaler's checkpoint path is tested on
CPU-only CI; it is slow on CPUs without fp16 arithmetic, which is the user's call to make.

Torch is imported inside the functions: the trainables' settings checks (which import the names here) must not
import it.

Example:
    >>> compute = Compute.from_settings({"device": "cpu", "precision": "bf16"})
    >>> compute.device, compute.precision.name
    (device(type='cpu'), 'bf16')
    >>> import torch
    >>> with compute.autocast():
    ...     torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype
    torch.bfloat16
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search.errors import SpecError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Precision:
    """A ``settings.precision`` value and what it asks of torch.

    Attributes:
        name: ``fp32``, ``bf16`` or ``fp16``.
        dtype: the torch dtype autocast computes in, by name; None runs everything in float32 (no autocast).
        scaled: whether the loss needs scaling (fp16 gradients underflow; bf16 has fp32's exponent range).
    """

    name: str
    dtype: str | None
    scaled: bool


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (Precision("fp32", None, False), Precision("bf16", "bfloat16", False), Precision("fp16", "float16", True))
}


def check_settings(settings: dict, file: str) -> None:
    """``settings.device`` and ``settings.precision`` are known names (whether a GPU exists is checked in the
    trial, which may run on another machine than the sweep's driver).

    Raises:
        SpecError: naming ``settings.device`` or ``settings.precision``, the bad value and the valid ones.
    """
    for key, valid in (("device", DEVICES), ("precision", tuple(PRECISIONS))):
        if settings[key] not in valid:
            raise SpecError(file, f"settings.{key}", f"must be one of {', '.join(valid)}, got {settings[key]!r}")


def trial_gpus() -> float | None:
    """GPUs Ray assigned to this trial (0.0 when none, a fraction when shared), or None outside a Ray worker."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    except Exception:  # the driver process (Ray refuses assigned resources there), or no Ray at all
        return None


def resolve_device(requested: str, file: str, gpus: float | None) -> torch.device:
    """The device a trial computes on.

    Args:
        requested: ``settings.device``: ``auto``, ``cpu`` or ``cuda``.
        file: the sweep file, named in errors.
        gpus: ``trial_gpus()``: what Ray assigned, or None outside Ray.

    Raises:
        SpecError: ``cuda`` where torch sees no GPU, or where Ray gave the trial none.
    """
    import torch

    available = torch.cuda.is_available()
    if requested == "cpu" or (requested == "auto" and (not available or gpus == 0.0)):
        return torch.device("cpu")
    if not available:
        raise SpecError(
            file, "settings.device", "is cuda but torch sees no CUDA GPU here (torch.cuda.is_available() is "
            f"False; torch {torch.__version__}); use device: auto or cpu, or a CUDA build of torch on a GPU machine"
        )  # fmt: skip
    if gpus == 0.0:
        raise SpecError(
            file, "settings.device", "is cuda but Ray gave this trial no GPU; set resources.gpu (e.g. 1, or 0.5 to "
            "share one), or device: auto"
        )  # fmt: skip
    return torch.device("cuda")  # Ray's CUDA_VISIBLE_DEVICES makes the trial's GPU the first one it sees


@dataclass(frozen=True)
class Compute:
    """A trial's device and precision, and what follows from them (autocast, gradient scaler, RNG states)."""

    device: torch.device
    precision: Precision

    @classmethod
    def from_settings(cls, settings: dict, gpus: float | None = None) -> Compute:
        """Resolve ``settings.device`` (with ``trial_gpus()`` unless ``gpus`` is given) and ``settings.precision``.

        Raises:
            SpecError: see ``resolve_device``; also bf16 on a GPU without bfloat16 support.
        """
        file = settings.get("spec_file", "<config>")
        device = resolve_device(settings["device"], file, trial_gpus() if gpus is None else gpus)
        precision = PRECISIONS[settings["precision"]]
        if device.type == "cuda" and precision.name == "bf16":
            import torch

            if not torch.cuda.is_bf16_supported():
                raise SpecError(file, "settings.precision", "is bf16 but this GPU has no bfloat16; use fp16 or fp32")
        return cls(device, precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the precision's dtype on this device type; no autocast for fp32."""
        import torch

        if self.precision.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, self.precision.dtype))

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, enabled for fp16 only; disabled, its ``scale``/``unscale_``/``step``/``update`` are plain
        ``optimizer.step()`` and no-ops, so that the training step has one code path."""
        import torch

        return torch.amp.GradScaler(self.device.type, enabled=self.precision.scaled)

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``batch`` with every tensor moved to the device."""
        return {k: v.to(self.device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}

    def rng_state(self) -> dict[str, Any]:
        """The CPU generator's state, and the device's when it is an accelerator (dropout draws there)."""
        import torch

        state = {"torch": torch.get_rng_state()}
        if self.device.type != "cpu":
            state[self.device.type] = torch.get_device_module(self.device).get_rng_state()
        return state

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore ``rng_state()``'s generators; a device state saved on another device type is ignored."""
        import torch

        torch.set_rng_state(state["torch"])
        if self.device.type != "cpu" and self.device.type in state:
            torch.get_device_module(self.device).set_rng_state(state[self.device.type])


__all__ = ["DEVICES", "PRECISIONS", "Compute", "Precision", "check_settings", "resolve_device", "trial_gpus"]

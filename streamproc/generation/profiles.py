"""Model profiles: how a checkpoint wants to be sampled.

A profile names the sampler (and its sigma shift), explicit timesteps where a distillation
was trained on a fixed list, the steps and guidance an event gets when it does not say, and
whether events may choose other ones. Step-distilled checkpoints (DMD, Self-Forcing) sample
in 3-4 steps without classifier-free guidance with an *x0-predict-and-renoise* sampler
(``lcm``: predict the clean latent, then noise it afresh to the next sigma); the base model
samples with UniPC over 16-50 steps with guidance.

Built-in profiles are in :data:`BUILTIN_PROFILES`; ``generation.profile`` names one or points
at a TOML/YAML file holding the same fields. This module imports neither torch nor diffusers
at import time: the settings validate profiles without loading the model stack.
"""

from __future__ import annotations

import tomllib
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streamproc.errors import ConfigError

SamplerKind = Literal["unipc", "dpm++", "euler", "lcm"]

#: The sampler whose label adds nothing to a model id (what every worker used before profiles).
DEFAULT_SAMPLER_LABEL = "unipc"


class ModelProfile(BaseModel):
    """How one checkpoint is sampled (a built-in one, or one read from a file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Short name of the profile.")
    description: str = Field("", description="What the profile is for, one line.")
    checkpoint: str | None = Field(
        None,
        description="The public checkpoint (hub id) the profile is written for; documentation "
        "only: generation.model chooses the weights.",
    )
    sampler: SamplerKind = Field(
        "unipc",
        description="'unipc' or 'dpm++' (multistep flow-matching solvers), 'euler' "
        "(FlowMatchEulerDiscreteScheduler) or 'lcm' (FlowMatchLCMScheduler: predict x0, "
        "renoise to the next sigma with the event's own noise; what DMD-distilled models need).",
    )
    shift: float = Field(
        5.0,
        gt=0,
        description="Flow-matching sigma shift: sigma = shift*s / (1 + (shift-1)*s). With "
        "explicit timesteps, s = timestep / 1000.",
    )
    timesteps: tuple[int, ...] | None = Field(
        None,
        description="Explicit descending timesteps (0-1000) the distillation was trained on; "
        "fixes the step count. Only with 'euler' or 'lcm'.",
    )
    steps: int = Field(16, ge=1, le=100, description="Denoising steps of an event that says none.")
    guidance: float = Field(
        5.0, ge=0, le=50, description="Guidance of an event that says none (<= 1: no CFG)."
    )
    guidance_fixed: bool = Field(
        False,
        description="Events may not ask for classifier-free guidance (a guidance-distilled "
        "model: exactly one transformer pass per step).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelProfile:
        if self.timesteps is not None:
            if self.sampler not in ("euler", "lcm"):
                raise ValueError("explicit timesteps need sampler 'euler' or 'lcm'")
            ts = self.timesteps
            if not ts or any(not 0 < t <= 1000 for t in ts):
                raise ValueError("timesteps must lie in (0, 1000]")
            if any(a <= b for a, b in pairwise(ts)):
                raise ValueError("timesteps must be strictly descending")
            if self.steps != len(ts):
                raise ValueError(f"steps must equal the number of timesteps ({len(ts)})")
        if self.guidance_fixed and self.guidance > 1.0:
            raise ValueError("a profile with guidance_fixed samples without guidance (<= 1)")
        return self

    @property
    def fixed_steps(self) -> int | None:
        """The only step count events may ask for (None: any, up to the limits)."""
        return len(self.timesteps) if self.timesteps is not None else None

    @property
    def stochastic(self) -> bool:
        """Whether each step draws fresh noise (from the event's own generator)."""
        return self.sampler == "lcm"

    def sampler_label(self) -> str:
        """Everything about the sampler that changes a video, as a short stable string:
        ``unipc``, ``dpm++``, ``lcm:shift=1:t=1000,757,522``. Part of object keys (as the
        result's ``scheduler``) and, unless it is plain ``unipc``, of the model id."""
        label: str = self.sampler
        if self.shift != 5.0:
            label += f":shift={self.shift:g}"
        if self.timesteps is not None:
            label += ":t=" + ",".join(str(t) for t in self.timesteps)
        return label

    def model_id(self, weights_id: str) -> str:
        """The id a worker serving ``weights_id`` with this profile reports: the weights, and
        after ``#`` the sampler label unless it is the default. Cache scopes and object keys
        include the model id, so two samplers never share an entry or a key."""
        label = self.sampler_label()
        return weights_id if label == DEFAULT_SAMPLER_LABEL else f"{weights_id}#{label}"

    def with_overrides(self, *, sampler: SamplerKind | None, shift: float | None) -> ModelProfile:
        """This profile with the sampler or shift replaced (None keeps the profile's)."""
        update: dict[str, Any] = {}
        if sampler is not None:
            update["sampler"] = sampler
        if shift is not None:
            update["shift"] = shift
        if not update:
            return self
        try:
            return ModelProfile.model_validate(self.model_dump() | update)
        except ValidationError as exc:
            raise ConfigError(f"profile {self.name!r}: {_first_error(exc)}") from None

    # -- the diffusers side (imports diffusers when called) ----------------------------------

    def make_scheduler(self, base_config: Any) -> Any:
        """A fresh diffusers scheduler for this profile; ``base_config`` is the pipeline's
        scheduler config (its ``num_train_timesteps`` is kept)."""
        from diffusers import (
            DPMSolverMultistepScheduler,
            FlowMatchEulerDiscreteScheduler,
            FlowMatchLCMScheduler,
            UniPCMultistepScheduler,
        )

        flow = {"prediction_type": "flow_prediction", "use_flow_sigmas": True}
        if self.sampler == "unipc":
            return UniPCMultistepScheduler.from_config(base_config, **flow, flow_shift=self.shift)
        if self.sampler == "dpm++":
            return DPMSolverMultistepScheduler.from_config(
                base_config,
                algorithm_type="dpmsolver++",
                solver_order=2,
                **flow,
                flow_shift=self.shift,
            )
        train = int(_config_get(base_config, "num_train_timesteps", 1000))
        if self.sampler == "euler":
            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=train, shift=self.shift)
        return FlowMatchLCMScheduler(num_train_timesteps=train, shift=self.shift)

    def set_timesteps(self, scheduler: Any, steps: int, device: Any) -> None:
        """Prepare ``scheduler`` for a call of ``steps`` steps (explicit timesteps when the
        profile has them), starting at the first."""
        if self.timesteps is not None:
            if steps != len(self.timesteps):
                raise ValueError(
                    f"profile {self.name!r} samples exactly {len(self.timesteps)} steps, "
                    f"not {steps}"
                )
            scheduler.set_timesteps(timesteps=[float(t) for t in self.timesteps], device=device)
        else:
            scheduler.set_timesteps(steps, device=device)
        scheduler.set_begin_index(0)


def _config_get(config: Any, key: str, default: Any) -> Any:
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


BUILTIN_PROFILES: dict[str, ModelProfile] = {
    p.name: p
    for p in (
        ModelProfile(
            name="wan2.2-ti2v-5b",
            description="The base model: UniPC, 16 steps, classifier-free guidance 5 "
            "(the model card uses 50 steps).",
            checkpoint="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
            sampler="unipc",
            shift=5.0,
            steps=16,
            guidance=5.0,
        ),
        ModelProfile(
            name="fastwan2.2-ti2v-5b-dmd3",
            description="FastWan2.2 (DMD, 3 steps, no guidance): x0-predict-and-renoise at "
            "timesteps 1000, 757, 522.",
            checkpoint="FastVideo/FastWan2.2-TI2V-5B-FullAttn-Diffusers",
            sampler="lcm",
            shift=1.0,
            timesteps=(1000, 757, 522),
            steps=3,
            guidance=1.0,
            guidance_fixed=True,
        ),
        ModelProfile(
            name="wan2.2-ti2v-5b-turbo",
            description="Wan2.2-TI2V-5B-Turbo (Self-Forcing DMD, 4 steps, no guidance): "
            "x0-predict-and-renoise at timesteps 1000, 750, 500, 250.",
            checkpoint="quanhaol/Wan2.2-TI2V-5B-Turbo",
            sampler="lcm",
            shift=1.0,
            timesteps=(1000, 750, 500, 250),
            steps=4,
            guidance=1.0,
            guidance_fixed=True,
        ),
        ModelProfile(
            name="wan2.2-ti2v-5b-euler4",
            description="Flow-matching Euler, 4 steps, no guidance: for step-distilled "
            "checkpoints trained as ODE solvers (and for measuring the 4-step workload).",
            sampler="euler",
            shift=5.0,
            steps=4,
            guidance=1.0,
        ),
    )
}

DEFAULT_PROFILE = "wan2.2-ti2v-5b"


def load_profile(spec: str) -> ModelProfile:
    """A built-in profile by name, or a profile read from a ``.toml``/``.yaml``/``.yml`` file
    (a table of :class:`ModelProfile` fields). Raises ConfigError saying what is wrong."""
    if spec in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[spec]
    path = Path(spec)
    if path.suffix.lower() not in (".toml", ".yaml", ".yml"):
        known = ", ".join(sorted(BUILTIN_PROFILES))
        raise ConfigError(
            f"unknown model profile {spec!r}: name a built-in one ({known}) or a .toml/.yaml file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read model profile {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"model profile {path} does not parse: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"model profile {path} must hold a table of fields")
    try:
        return ModelProfile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"model profile {path}: {_first_error(exc)}") from None

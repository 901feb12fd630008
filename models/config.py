"""The architecture config: which mixer, at what size, with which MLP."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from archbench.validation import format_validation_error
from models.registry import get_mixer


class ArchConfigError(ValueError):
    """Architecture settings that fail validation; the message names the fix."""


class ArchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("transformer", description="registered mixer (see `archbench archs`)")
    d_model: int = Field(128, ge=8)
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(4, ge=1)
    mlp: Literal["swiglu", "relu", "none", "hourglass"] = "swiglu"
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden width / d_model (swiglu: 2/3 of it)")
    norm: Literal["rmsnorm", "none"] = "rmsnorm"
    tie_embeddings: bool = True
    init_std: float | None = Field(None, gt=0, description="std of plain weight matrices (default 0.02); "
                                   "Nanda et al.'s grokking model uses 1/sqrt(d_model)")
    options: dict[str, Any] = Field(default_factory=dict, description="the mixer's own settings")
    kernels: Literal["auto", "torch", "triton"] | None = Field(
        None, exclude=True,
        description="which kernels the mixers run (auto: Triton on CUDA, torch elsewhere; torch; triton); "
                    "unset: $ARCHBENCH_KERNELS, else auto. Not part of the config's identity (same function, "
                    "another code path), so it is left out of dumps and run ids")

    @model_validator(mode="after")
    def _check(self) -> "ArchConfig":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"head_dim = d_model / n_heads = {self.d_model // self.n_heads} must be even")
        return self

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def resolved(self) -> "ArchConfig":
        """A copy whose ``options`` hold every mixer option, defaults filled in."""
        cls = get_mixer(self.name)
        try:
            opts = cls.Options(**self.options).model_dump(mode="json")
        except ValidationError as e:
            raise ArchConfigError(f"invalid options for architecture {self.name!r}: "
                                  f"{format_validation_error(e)}") from None
        return self.model_copy(update={"options": opts})

    def mixer_options(self):
        return get_mixer(self.name).Options(**self.options)

    @property
    def size_label(self) -> str:
        return f"d{self.d_model}-L{self.n_layers}-H{self.n_heads}"

"""Settings, from ``ACTIVATION_*`` environment variables; ``python -m service`` flags override them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACTIVATION_", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes (one per pod under Kubernetes).")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: Literal["json", "text"] = "json"
    max_body_bytes: int = Field(64 * 2**20, ge=1024, description="Largest request body; larger gets 413.")
    max_elements: int = Field(16_000_000, ge=1, description="Largest array in a request; larger gets 413.")
    max_jacobian_elements: int = Field(
        25_000_000,
        ge=1,
        description="Largest Jacobian /derivative returns; larger gets 413 (send grad instead).",
    )
    api_keys: CommaList = Field(default_factory=list, description="Bearer keys; empty: no auth.")
    cors_origins: CommaList = Field(
        default_factory=list, description="Origins allowed by CORS; empty: CORS off."
    )
    root_path: str = Field("", description="Path prefix when served behind a proxy.")
    max_concurrency: int = Field(
        64, ge=1, description="Compute requests served at once per process; more get 503 with Retry-After."
    )
    drain_seconds: int = Field(
        20, ge=1, description="On SIGTERM, how long in-flight requests may take to finish."
    )

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

"""Settings, from ``ACTIVATION_*`` environment variables; ``python -m service`` flags override them."""

from __future__ import annotations

import os
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
    memory_budget_bytes: int = Field(
        512 * 2**20,
        ge=16 * 2**20,
        description="Memory the requests of one process may hold at once (bodies, arrays, replies); "
        "a request that can never fit gets 413, one that does not fit now 503 with Retry-After.",
    )
    compute_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=256,
        description="Threads that run costly work (large arrays, Jacobians, archives) off the event loop.",
    )
    header_timeout: float = Field(
        10.0, gt=0, description="Seconds a client has to send a request's headers; 408 and close after."
    )
    body_timeout: float = Field(
        10.0, gt=0, description="Seconds a request body may pause between two reads; 408 after."
    )
    request_timeout: float = Field(
        60.0, gt=0, description="Seconds a whole request (headers and body) may take to arrive; 408 after."
    )
    min_body_rate: int = Field(
        256 * 1024,
        ge=1,
        description="Bytes per second a body over 64 KiB must average after its first 2 s; 408 below it "
        "(a body's memory is reserved when it starts, so a slow sender must not hold it long).",
    )
    compute_timeout: float = Field(
        120.0,
        gt=0,
        description="Seconds a request's computation may take (its wait for a thread included); it is "
        "then stopped, its thread and memory given back, and the request answered 503.  A computation "
        "whose client closes the connection is stopped too.",
    )
    queue_timeout: float = Field(
        10.0,
        ge=0,
        description="Seconds a request may wait for room in the memory budget; 503 with Retry-After after.",
    )
    idle_timeout: float = Field(
        5.0, gt=0, description="Seconds a connection may stay open with no request in progress."
    )
    write_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a reply may make no progress (a client that stops reading); the "
        "connection is then closed and the reply's memory freed.",
    )
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, description="Largest request line and headers together; larger gets 431."
    )
    max_headers: int = Field(100, ge=8, description="Most header fields in a request; more gets 431.")

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

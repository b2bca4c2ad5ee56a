"""Settings of the dispatcher service (``HATO_DISPATCHER_*`` plus the shared sections)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import ServiceSettings, comma_list


class DispatcherSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HATO_DISPATCHER_", extra="ignore")

    pools: Annotated[list[str], NoDecode] = Field(
        ["default"], description="IP pools whose delivery queues this instance consumes."
    )
    routes: str = Field(
        "",
        description="Static routes 'domain=host:port,...'; '*' matches every other domain.",
    )
    helo_name: str = Field("hato.localhost", description="Name this instance gives in EHLO.")
    retry_delays: Annotated[list[float], NoDecode] = Field(
        [60, 300, 900, 3600, 14400],
        description="Seconds before each retry of a deferred recipient; the last repeats.",
    )
    max_age: float = Field(
        72 * 3600, gt=0, description="Seconds after acceptance a deferred recipient expires."
    )
    smtp_timeout: float = Field(
        300, gt=0, description="Seconds to wait for each SMTP reply (RFC 5321 4.5.3.2)."
    )
    connect_timeout: float = Field(30, gt=0, description="Seconds to wait for a connection.")

    _split_pools = comma_list("pools")
    _split_delays = comma_list("retry_delays")

"""The ingest service: wires the front doors to the Acceptor and runs until SIGTERM."""

from __future__ import annotations

from services.ingest.accept import Acceptor
from services.ingest.http import create_app
from services.ingest.policy import RelayPolicy
from services.ingest.settings import IngestSettings
from services.ingest.smtp import RelayHandler, SmtpListener
from shared import logging as hlog
from shared.ops import HttpServer
from shared.runtime import Runtime

log = hlog.get_logger(__name__)


async def run(settings: IngestSettings) -> None:
    async with Runtime("ingest", settings) as rt:
        policy = RelayPolicy()
        await policy.refresh(rt.store)
        rt.every(settings.policy_refresh, lambda: policy.refresh(rt.store))
        acceptor = Acceptor(rt.store, rt.broker)
        smtp = SmtpListener(
            RelayHandler(policy, acceptor, max_recipients=settings.max_recipients),
            host=settings.smtp_host,
            port=settings.smtp_port,
            hostname=settings.hostname,
            max_size=settings.max_message_size,
        )
        http = HttpServer(
            create_app(rt.store, operator_token=settings.operator_token()),
            host=settings.http_host,
            port=settings.http_port,
        )
        await smtp.start()
        await http.start()
        rt.serving()
        log.info(
            "ready",
            smtp=f"{smtp.host}:{smtp.port}",
            http=f"{http.host}:{http.port}",
            ops_port=rt.ops.port,
        )
        await rt.until_stopped()
        await smtp.stop()
        await http.stop()
        await acceptor.drain(settings.shutdown_grace)

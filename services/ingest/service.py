"""The ingest service: wires the front doors to the Acceptor and runs until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from services.ingest.accept import Acceptor, FrontDoor
from services.ingest.amqp import SubmitHandler, decode_json
from services.ingest.http import create_app
from services.ingest.http.admin import Admin
from services.ingest.policy import RelayPolicy
from services.ingest.scheduled import Releaser
from services.ingest.send import DoorLimits, Sender
from services.ingest.settings import IngestSettings
from services.ingest.smtp import (
    Authenticator,
    AuthThrottle,
    Mode,
    RelayHandler,
    SessionGuard,
    SmtpListener,
)
from services.ingest.tls import server_context
from shared import logging as hlog
from shared import metrics
from shared.broker import Queue
from shared.domain_health import DomainHealth
from shared.egress import Egress
from shared.errors import ConfigError
from shared.leases import Leases, holder_id
from shared.ops import HttpServer
from shared.provisioning import Provisioner
from shared.runtime import Runtime
from shared.schemas import Changed, ChangeKind, Event
from shared.secrets import SecretBox

log = hlog.get_logger(__name__)


def smtp_listeners(
    settings: IngestSettings, policy: RelayPolicy, acceptor: Acceptor, authenticator: Authenticator
) -> list[SmtpListener]:
    """The relay listener, and the submission, smtps and legacy-TLS ones that are configured."""
    tls = legacy = None
    if settings.tls_cert_file:
        tls = server_context(settings.tls_cert_file, settings.tls_key_file)
        legacy = server_context(
            settings.tls_cert_file,
            settings.tls_key_file,
            minimum=settings.legacy_tls_min_version,
        )
    wants_tls = {
        "submission": settings.submission_port,
        "smtps": settings.smtps_port,
        "legacy TLS": settings.legacy_tls_port,
    }
    for name, port in wants_tls.items():
        if port >= 0 and tls is None:
            raise ConfigError(f"the {name} listener needs HATO_INGEST_TLS_CERT_FILE and _KEY_FILE")
    throttle = AuthThrottle(
        max_failures=settings.auth_max_failures,
        window=settings.auth_failure_window,
        lockout=settings.auth_lockout,
        max_failures_per_user=settings.auth_max_failures_per_user,
    )
    guard = SessionGuard(
        greet_pause=settings.smtp_greet_pause,
        max_errors=settings.smtp_max_errors,
        per_client=settings.smtp_max_connections_per_client,
    )

    def handler(mode: Mode) -> RelayHandler:
        return RelayHandler(
            policy,
            acceptor,
            authenticator,
            throttle,
            mode=mode,
            max_recipients=settings.max_recipients,
            max_size=settings.max_message_size,
            max_line=settings.max_line_length,
        )

    common = {
        "host": settings.smtp_host,
        "hostname": settings.hostname,
        "guard": guard,
        "timeout": settings.smtp_timeout,
    }
    listeners = [SmtpListener(handler(Mode.RELAY), port=settings.smtp_port, tls=tls, **common)]
    if settings.submission_port >= 0:
        listeners.append(
            SmtpListener(handler(Mode.SUBMISSION), port=settings.submission_port, tls=tls, **common)
        )
    if settings.smtps_port >= 0:
        listeners.append(
            SmtpListener(
                handler(Mode.SUBMISSION),
                port=settings.smtps_port,
                tls=tls,
                implicit_tls=True,
                **common,
            )
        )
    if settings.legacy_tls_port >= 0:
        listeners.append(
            SmtpListener(handler(Mode.RELAY), port=settings.legacy_tls_port, tls=legacy, **common)
        )
    return listeners


def _has_master_key(settings: IngestSettings) -> bool:
    s = settings.secrets
    return bool(s.master_key.get_secret_value() or s.master_key_file)


async def run(settings: IngestSettings) -> None:
    async with Runtime("ingest", settings) as rt:
        policy = RelayPolicy()
        await policy.refresh(rt.store)
        rt.every(settings.policy_refresh, lambda: policy.refresh(rt.store))
        acceptor = Acceptor(
            rt.store, rt.broker, hostname=settings.hostname, sign_batch=settings.sign_batch
        )
        authenticator = Authenticator(rt.store.directory, policy)
        listeners = smtp_listeners(settings, policy, acceptor, authenticator)
        box = SecretBox.from_settings(settings.secrets) if _has_master_key(settings) else None

        async def apply(change: Changed | None = None) -> None:
            if change is not None and change.what is ChangeKind.QUEUE:
                return  # queue controls are the dispatchers'
            await policy.refresh(rt.store)
            app.state.api_keys.clear()

        async def announce(what: ChangeKind, name: str, events: Sequence[Event] = ()) -> None:
            await rt.store.events.append(events)
            await apply()  # here at once, even when the broker cannot tell the others
            try:
                if what is ChangeKind.POOLS and name:  # its mail waits durably from now on
                    await rt.broker.declare_pool(name)
                await rt.broker.emit(events)
                await rt.broker.publish(Changed(what=what, name=name))
            except Exception as exc:  # made already; the others refresh on their own
                log.warning("change not announced", error=repr(exc))

        egress = Egress.from_settings(settings.egress)
        health = DomainHealth(settings.dns, egress=egress)
        admin = Admin(
            rt.store.directory,
            rt.store.suppressions,
            Provisioner(rt.store.directory, rt.store.pools, box, settings.dns),
            changed=announce,
            broker=rt.broker,
            store=rt.store,
            health=health,
        )
        app = create_app(
            rt.store,
            operator_token=settings.operator_token(),
            acceptor=acceptor,
            policy=policy,
            limits=DoorLimits(
                settings.max_message_size, settings.max_recipients, settings.max_line_length
            ),
            admin=admin,
            box=box,
            changed=announce,
            egress=egress,
            health=health,
            console=settings.console,
            console_secure_cookies=settings.console_secure_cookies,
            console_grafana_url=settings.console_grafana_url,
            unsubscribe=settings.unsubscribe.make(),
        )
        http = HttpServer(app, host=settings.http_host, port=settings.http_port)
        submit = SubmitHandler(
            rt.store,
            rt.broker,
            Sender(
                acceptor,
                policy,
                DoorLimits(
                    settings.max_message_size, settings.max_recipients, settings.max_line_length
                ),
                door=FrontDoor.AMQP,
            ),
        )
        await rt.broker.consume(Queue.SUBMIT, submit.handle, decode=decode_json)
        await rt.broker.on_change(apply)
        for listener in listeners:
            await listener.start()
        await http.start()

        async def certificate() -> None:
            if settings.tls_cert_file:
                metrics.certificate_expiry(settings.tls_cert_file)

        rt.census(queues=[Queue.SIGN.value], collectors=[certificate])
        # Expired Idempotency-Keys go (what a TTL index does where the server has one).
        rt.every(3600, rt.store.idempotency.purge)
        leases = Leases(rt.store.db, holder=holder_id("ingest"), ttl=settings.lease_ttl)
        await leases.ensure_indexes()
        releaser = Releaser(rt.store, rt.broker)
        leases.lease("scheduled-release").every(rt, settings.schedule_interval, releaser.run)
        rt.serving()
        log.info(
            "ready",
            smtp=[f"{s.host}:{s.port}" for s in listeners],
            http=f"{http.host}:{http.port}",
            ops_port=rt.ops.port,
        )
        await rt.until_stopped()
        await stop_doors(rt, listeners, http, acceptor)
        await leases.close(rt.grace_left() / 2)


async def stop_doors(
    rt: Runtime, listeners: list[SmtpListener], http: HttpServer, acceptor: Acceptor
) -> None:
    """Close the doors and let accepts in progress finish, within what is left of the one
    shutdown grace; the runtime's broker drain then gets the rest of it, not a grace of its
    own (two would outlast the pod's terminationGracePeriodSeconds and end in SIGKILL)."""
    for listener in listeners:
        await listener.stop()
    # uvicorn waits for requests in flight without a limit of its own.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(http.stop(), rt.grace_left())
    await acceptor.drain(rt.grace_left())

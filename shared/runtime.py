"""What every service process has: the store, the broker, its ops endpoint, and SIGTERM.

A service's ``run(settings)`` reads::

    async with Runtime("signer", settings) as rt:
        await rt.broker.consume(Queue.SIGN, Signer(rt.store, rt.broker).handle)
        await rt.until_stopped()

Entering connects (retrying until the servers answer or a stop is requested),
creates indexes, declares the topology and serves ``/healthz``, ``/readyz``
and ``/metrics``. Leaving drains: consumers stop, in-flight work gets
what is left of ``shutdown_grace``, then connections close. The grace is one budget counted
from the stop request (SIGTERM): a service that drains work of its own first (ingest's
accepts) passes ``grace_left()`` and the broker's drain gets the rest, so the whole drain fits
in ``shutdown_grace`` and a pod's terminationGracePeriodSeconds can be sized from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

from shared import logging as hlog
from shared import metrics
from shared.broker import Broker
from shared.errors import TRANSIENT_ERRORS, ConfigError
from shared.known_secrets import refuse_default_secrets
from shared.ops import HttpServer, ops_app
from shared.secrets import SecretBox, SecretsError
from shared.settings import ServiceSettings
from shared.store import Store

log = hlog.get_logger(__name__)


class Stopped(Exception):
    """Raised inside ``Runtime.__aenter__`` when a stop was requested before start-up ended."""


class Runtime:
    def __init__(self, name: str, settings: ServiceSettings, *, pools: Iterable[str] = ()) -> None:
        self.name = name
        self.settings = settings
        self.store = Store(settings.store)
        self.broker = Broker(settings.broker, name=name, pools=pools)
        self.broker.seal_key = seal_key(settings)
        self.ops = HttpServer(
            ops_app(name, self.readiness, lambda: dict(self.problems)),
            host=settings.ops_host,
            port=settings.ops_port,
        )
        self._stop = asyncio.Event()
        self._stop_at: float | None = None  # monotonic time of the stop request
        self._serving = False
        self._background: set[asyncio.Task[None]] = set()
        self._census: metrics.Census | None = None
        # What else must hold for the service to be ready: name → (check, why it fails).
        self._checks: dict[str, Callable[[], Awaitable[str]]] = {}
        self.problems: dict[str, str] = {}

    async def readiness(self) -> dict[str, bool]:
        checks = {
            "serving": self._serving and not self._stop.is_set(),
            "broker": self.broker.is_connected,
            "store": await self.store.ping(),
        }
        for name, check in self._checks.items():
            try:
                problem = await check()
            except Exception as exc:  # a check that cannot run is not a pass
                problem = f"the check failed: {exc!r}"
            checks[name] = not problem
            if problem:
                self.problems[name] = problem
            else:
                self.problems.pop(name, None)
        return checks

    def require(self, name: str, check: Callable[[], Awaitable[str]]) -> None:
        """Another condition of readiness: ``check`` returns "" when it holds, else why not
        (shown by /readyz under ``problems``)."""
        self._checks[name] = check

    def serving(self) -> None:
        """Called by the service once its consumers and listeners are up: ready from now on."""
        self._serving = True

    def request_stop(self) -> None:
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        self._stop.set()

    def grace_left(self) -> float:
        """Seconds left of ``shutdown_grace`` since the stop request (all of it before one):
        every drain step of a stopping service shares this one budget."""
        if self._stop_at is None:
            return self.settings.shutdown_grace
        spent = time.monotonic() - self._stop_at
        return max(0.0, self.settings.shutdown_grace - spent)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def until_stopped(self) -> None:
        await self._stop.wait()

    def every(self, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        """Run ``job`` every ``seconds`` until the service stops; failures are logged."""

        async def loop() -> None:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), seconds)
                    return
                try:
                    await job()
                except Exception:
                    log.exception("periodic job failed", job=getattr(job, "__name__", "?"))

        task = asyncio.create_task(loop())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def census(
        self,
        *,
        queues: Iterable[str] = (),
        collectors: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        """Report this service on /metrics: its dependencies, the depth and oldest job of
        the queues it consumes and of ``queues``, and what ``collectors`` read, every
        ``HATO_METRICS_INTERVAL`` seconds."""
        extra = tuple(queues)

        async def watched() -> set[str]:
            return self.broker.consuming() | set(extra)

        self._census = metrics.start_census(
            self,
            self.name,
            self.settings.telemetry.metrics_interval,
            queues=watched,
            collectors=collectors,
        )

    async def __aenter__(self) -> Runtime:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        await self.ops.start()
        log.info("ops endpoint up", url=f"http://{self.ops.host}:{self.ops.port}")
        try:
            await self._until_up("store", self.store.ensure_indexes)
            await self._until_up("broker", self.broker.connect)
        except Stopped:
            await self.__aexit__(None, None, None)
            raise
        log.info("started", ops_port=self.ops.port)
        return self

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("stop requested", signal=sig.name)
        self.request_stop()

    async def _until_up(self, what: str, connect: Callable[[], Awaitable[None]]) -> None:
        delay = 0.5
        while True:
            try:
                await connect()
                return
            except TRANSIENT_ERRORS as exc:
                log.warning(f"{what} unavailable; retrying", error=repr(exc), retry_in=delay)
            if self._stop.is_set():
                raise Stopped(what)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                raise Stopped(what)
            delay = min(delay * 2, 10.0)

    async def __aexit__(self, *exc_info: object) -> None:
        self.request_stop()
        await self.broker.drain(self.grace_left())
        for task in list(self._background):
            task.cancel()
        if self._census is not None:
            await self._census.close()
        await self.broker.close()
        await self.store.close()
        await self.ops.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().remove_signal_handler(sig)
        log.info("stopped")


def main(name: str, settings: ServiceSettings, run: Callable[[], Awaitable[None]]) -> None:
    """A service process: logging and tracing configured, no secret anyone could know (or the
    operator's HATO_ALLOW_DEFAULT_SECRETS), ``run()`` on the event loop."""
    from shared.telemetry import configure_tracing

    hlog.configure(name, level=settings.telemetry.log_level, fmt=settings.telemetry.log_format)
    provider = configure_tracing(name, otlp_endpoint=settings.telemetry.otlp_endpoint)
    try:
        for problem in refuse_default_secrets(settings):
            log.warning("starting with a secret anyone could know", problem=problem)
        _settle_heap(settings.gc_threshold)
        with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
            runner.run(_guarded(run))
    except ConfigError as exc:
        log.error("cannot start: bad configuration", error=str(exc))
        sys.exit(2)
    finally:
        provider.shutdown()


def _settle_heap(threshold: tuple[int, int, int]) -> None:
    """What start-up made (modules, schemas, metrics; most of a service's objects) is frozen:
    the cyclic collector never walks it again. Without this, and with Python's own
    thresholds, each full collection walked ~100,000 objects and stopped the event loop for
    50-150 ms under load, the slowest mails of a steady run."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*threshold)


def _loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


async def _guarded(run: Callable[[], Awaitable[None]]) -> None:
    with contextlib.suppress(Stopped):
        await run()


def seal_key(settings: ServiceSettings) -> bytes | None:
    """The key sealing what services hand each other on the broker: HATO_AMQP_SEAL_KEY(_FILE),
    else one derived from the master key; None (nothing sealed or checked) without either."""
    broker = settings.broker
    key = broker.seal_key.get_secret_value()
    if not key and broker.seal_key_file:
        try:
            key = Path(broker.seal_key_file).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the seal key file: {exc.strerror}") from None
    if key.strip():
        return key.strip().encode()
    secrets = getattr(settings, "secrets", None)
    if secrets is not None:
        try:
            return SecretBox.from_settings(secrets).derive("broker seal")
        except SecretsError:
            pass
    log.warning("no seal key and no master key: jobs on the broker are neither sealed nor checked")
    return None

"""One trace per mail, as an OTLP collector receives it: the four services run as processes
exporting to a real OTLP/HTTP receiver on loopback; a mail sent over HTTP with the caller's
``traceparent`` is deferred once, delivered over STARTTLS, reported to a webhook and bounced
afterwards, and every step is a span of the caller's trace; a mail over SMTP starts a trace of
its own, and a complaint is matched back into its mail's trace. Log lines name the trace."""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import httpx
import pytest
from aiosmtpd.smtp import SMTP
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.ops import HttpServer
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import SERVICES, Stack, free_port
from tests.conftest import AMQP_URL, MONGODB_URL, TENANT, provision, unique
from tests.helpers import reports
from tests.helpers.cli import run_hato
from tests.helpers.dns import DnsServer
from tests.helpers.otlp import OtlpReceiver, ReceivedSpan, tree
from tests.helpers.reports import dsn
from tests.helpers.sinks import Sink
from tests.helpers.smtp import RawSession, make_message
from tests.helpers.smtp import send as smtp_send
from tests.helpers.tls import make_certificate
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

DOMAIN = "trace.test"
MX_HOST = "mx.trace.test"
SINK_IP = "127.0.0.7"
VERP_KEY = "verp-" + unique("key")
GREYLISTED = "451 4.7.1 Greylisted, try again later"
FBL = "fbl@feedback.trace.test"


@dataclass(kw_only=True)
class TlsSink(Sink):
    """The sink offering STARTTLS, and greylisting each recipient's first RCPT."""

    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        seen: set[str] = set()

        def greylist(address: str) -> str | None:
            if address.startswith("grey") and address not in seen:
                seen.add(address)
                return GREYLISTED
            return None

        self.rcpt_reply = greylist

    async def start(self) -> TlsSink:
        loop = asyncio.get_running_loop()
        self.port = self.port or free_port(self.host)
        self._server = await loop.create_server(
            lambda: SMTP(
                self, hostname="sink.test", enable_SMTPUTF8=True, tls_context=self.tls, loop=loop
            ),
            self.host,
            self.port,
        )
        return self


class Hook:
    """A tenant's webhook endpoint that keeps every POST's headers and body."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], dict]] = []
        app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        self.server = HttpServer(app, host="127.0.0.1", port=0)

    async def hook(self, request: Request) -> Response:
        self.posts.append((dict(request.headers), json.loads(await request.body())))
        return Response(status_code=204)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/hook"

    def posts_about(self, message_id: str, type_: str) -> list[dict[str, str]]:
        """The headers of the POSTs carrying a ``type_`` event of ``message_id``."""
        return [
            headers
            for headers, body in self.posts
            if any(e["message_id"] == message_id and e["type"] == type_ for e in body["events"])
        ]


@dataclass
class Traced:
    store: Store
    stack: Stack
    otlp: OtlpReceiver
    sink: TlsSink
    hook: Hook
    http_port: int
    smtp_port: int
    bounce_port: int
    key: str
    database: str


@pytest.fixture(scope="module")
async def traced(tmp_path_factory, master_key, dkim_key) -> AsyncIterator[Traced]:
    database, prefix = unique("trace"), unique("trace")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    _, key = await store.directory.add_api_key(TENANT)
    otlp = await OtlpReceiver().start()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(*make_certificate(tmp_path_factory.mktemp("tls"), MX_HOST))
    sink = await TlsSink(host=SINK_IP, tls=server_tls).start()
    dns_server = await DnsServer().start()
    dns_server.add(DOMAIN, "MX", f"10 {MX_HOST}.")
    dns_server.add(MX_HOST, "A", SINK_IP)
    hook = Hook()
    await hook.server.start()
    http_port, smtp_port, bounce_port = free_port(), free_port(), free_port()
    stack = Stack(
        env={
            "HATO_AMQP_URL": AMQP_URL,
            "HATO_AMQP_PREFIX": prefix,
            "HATO_AMQP_QUEUE_EXPIRES": "600000",
            "HATO_MONGODB_URL": MONGODB_URL,
            "HATO_MONGODB_DATABASE": database,
            "HATO_MASTER_KEY": master_key,
            "HATO_INGEST_SMTP_PORT": str(smtp_port),
            "HATO_INGEST_HTTP_PORT": str(http_port),
            "HATO_DNS_NAMESERVERS": dns_server.address,
            "HATO_DNS_TIMEOUT": "2",
            "HATO_DISPATCHER_MX_PORT": str(sink.port),
            "HATO_DISPATCHER_RETRY_DELAYS": "1",
            "HATO_VERP_KEY": VERP_KEY,
            "HATO_BOUNCE_SMTP_PORT": str(bounce_port),
            "HATO_BOUNCE_FBL_ADDRESS": FBL,
            "HATO_EGRESS_ALLOW": "127.0.0.0/8",  # the webhook receiver and MX are on loopback
            "HATO_OTLP_ENDPOINT": otlp.endpoint,
            # The SDK's batch processor exports every 5 s by default; the test needs less.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    await stack.start_all()
    yield Traced(store, stack, otlp, sink, hook, http_port, smtp_port, bounce_port, key, database)
    assert (await stack.stop_all()) == dict.fromkeys(SERVICES, 0)
    await hook.server.stop()
    await otlp.stop()
    await sink.stop()
    dns_server.stop()
    await store.client.drop_database(database)
    await store.close()


@dataclass
class Story:
    """One mail's life: sent with the caller's traceparent, deferred, delivered, reported to
    a webhook, bounced afterwards."""

    caller_trace: str
    caller_span: str
    message_id: str
    recipient_id: str
    address: str
    view: dict
    webhook_headers: list[dict[str, str]]


@pytest.fixture(scope="module")
async def story(traced: Traced) -> Story:
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    address = f"{unique('grey')}@{DOMAIN}"
    auth = {"Authorization": f"Bearer {traced.key}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{traced.http_port}", timeout=30
    ) as http:
        created = await http.post(
            "/v1/webhooks",
            json={"url": traced.hook.url, "events": ["delivered", "bounced"]},
            headers=auth,
        )
        assert created.status_code == 201, created.text
        await asyncio.sleep(0.5)  # the bounce service binds the webhook queue for it
        sent = await http.post(
            "/v1/messages",
            json={
                "from": "orders@shop.test",
                "to": [address],
                "subject": "Traced",
                "text": "Follow me.",
            },
            headers={**auth, "traceparent": f"00-{caller_trace}-{caller_span}-01"},
        )
        assert sent.status_code == 202, sent.text
        message_id = sent.json()["id"]
        recipient_id = sent.json()["recipients"][0]["id"]
        await eventually(
            lambda: traced.store.messages.recipient(recipient_id),
            until=lambda r: r["status"] == "delivered",
        )
        return_path = next(r.mail_from for r in traced.sink.received if address in r.rcpt_tos)
        delivered_posts = await eventually(
            lambda: asyncio.sleep(0, traced.hook.posts_about(message_id, "delivered")),
            until=bool,
        )
        # Days later, say: the recipient's server bounces it after all.
        await report(traced, return_path, dsn(address, "5.1.1", "550 5.1.1 User unknown"))
        await eventually(
            lambda: traced.store.messages.recipient(recipient_id),
            until=lambda r: r["status"] == "bounced",
        )
        view = (await http.get(f"/v1/messages/{message_id}", headers=auth)).json()
    return Story(
        caller_trace, caller_span, message_id, recipient_id, address, view, delivered_posts
    )


def one(spans: list[ReceivedSpan], **match: object) -> ReceivedSpan:
    """The single span with these fields (``attributes`` compared as a subset)."""
    wanted = dict(match)
    attributes = wanted.pop("attributes", {})
    found = [
        s
        for s in spans
        if all(getattr(s, k) == v for k, v in wanted.items())
        and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (match, "\n" + tree(spans))
    return found[0]


async def spans_of(traced: Traced, trace_id: str, *names: str) -> list[ReceivedSpan]:
    """The trace's spans once every one of ``names`` has arrived."""
    return await eventually(
        lambda: asyncio.sleep(0, traced.otlp.trace(trace_id)),
        until=lambda spans: set(names) <= {s.name for s in spans},
    )


async def test_one_mail_is_one_trace_across_the_four_services(traced: Traced, story: Story) -> None:
    """The caller's trace holds the mail's story, every span a child of what caused it and
    started after it: HTTP request, accept, sign, each delivery attempt (the retry linked to
    the first), the webhook POST (its traceparent naming the POST's span) and the bounce
    matched back; GET /v1/messages/{id} and `hato message show` name the trace."""
    assert story.view["trace_id"] == story.caller_trace
    assert "traceparent" not in story.view
    code, out, _ = await run_hato(
        {"HATO_MONGODB_URL": MONGODB_URL, "HATO_MONGODB_DATABASE": traced.database},
        "message",
        "show",
        story.message_id,
    )
    assert code == 0 and story.caller_trace in out

    spans = await spans_of(
        traced,
        story.caller_trace,
        "POST /v1/messages",
        "accept",
        "dkim sign",
        "webhook POST",
        "bounce matched",
    )
    assert {s.service for s in spans} == {f"hato-{name}" for name in SERVICES}
    by_id = {s.span_id: s for s in spans}

    request = one(spans, name="POST /v1/messages")
    assert (request.service, request.kind) == ("hato-ingest", "server")
    assert request.parent_span_id == story.caller_span  # the caller's span is the parent
    assert request.attributes["http.response.status_code"] == 202
    accept = one(spans, name="accept", parent_span_id=request.span_id)
    assert accept.attributes["hato.message_id"] == story.message_id
    assert accept.attributes["hato.tenant"] == TENANT
    sign_job = one(spans, service="hato-signer", parent_span_id=accept.span_id)
    assert sign_job.kind == "consumer" and sign_job.name.endswith(".sign process")
    dkim = one(spans, name="dkim sign", parent_span_id=sign_job.span_id)
    assert dkim.attributes["hato.dkim.domain"] == "shop.test"

    first = one(spans, name=f"deliver {DOMAIN}", attributes={"hato.attempt": 1})
    retry = one(spans, name=f"deliver {DOMAIN}", attributes={"hato.attempt": 2})
    for attempt in (first, retry):
        assert attempt.service == "hato-dispatcher"
        assert attempt.parent_span_id == sign_job.span_id
        assert attempt.attributes["hato.source_ip"] == "127.0.0.1"
        assert attempt.attributes["hato.destination"] == f"{MX_HOST}[{SINK_IP}]:{traced.sink.port}"
        assert attempt.attributes["hato.recipient_ids"] == [story.recipient_id]
        lookup = one(spans, name="mx lookup", parent_span_id=attempt.span_id)
        assert lookup.attributes["hato.mx.hosts"] == [MX_HOST]
        send = one(spans, name="smtp send", parent_span_id=attempt.span_id)
        assert send.attributes["server.address"] == MX_HOST
        assert send.attributes["network.peer.address"] == SINK_IP
        assert send.attributes["hato.source_ip"] == "127.0.0.1"
        assert send.attributes["hato.tls"] is True
        assert send.attributes["tls.protocol.version"].startswith("1.")
    assert first.attributes["smtp.reply.code"] == 451
    assert first.attributes["smtp.reply.enhanced"] == "4.7.1"
    assert first.attributes["hato.recipients.deferred"] == 1
    assert first.attributes["hato.retry_in"] == 1
    assert retry.attributes["smtp.reply.code"] == 250
    assert retry.attributes["smtp.reply.enhanced"] == "2.0.0"
    assert retry.attributes["hato.recipients.delivered"] == 1
    connect = one(
        spans,
        name="smtp connect",
        parent_span_id=one(spans, name="smtp send", parent_span_id=first.span_id).span_id,
    )
    assert connect.attributes["hato.tls"] is True
    # The retry is linked to the first attempt, not its child.
    assert [(x.trace_id, x.span_id) for x in retry.links] == [(story.caller_trace, first.span_id)]
    assert retry.links[0].attributes == {"hato.link": "first attempt"}
    assert first.end <= retry.start

    # The delivered event: published by the attempt, routed to the webhook outbox by the
    # bounce service, POSTed with the POST span's context.
    routed = [s for s in spans if s.name.endswith(".webhooks process")]
    delivered_route = one(routed, parent_span_id=retry.span_id)
    post = one(spans, name="webhook POST", parent_span_id=delivered_route.span_id)
    assert (post.service, post.kind) == ("hato-bounce", "client")
    assert post.attributes["hato.message_ids"] == [story.message_id]
    assert post.attributes["http.response.status_code"] == 204
    assert story.webhook_headers[0]["traceparent"] == f"00-{story.caller_trace}-{post.span_id}-01"

    # The bounce, matched back through the VERP return path: a child of the accept span,
    # linked to the trace of the report's own SMTP session.
    matched = one(spans, name="bounce matched")
    assert matched.parent_span_id == accept.span_id
    assert matched.attributes["hato.recipient_ids"] == [story.recipient_id]
    # The reason the classifier gave, as the bounced event in the message's record says it.
    bounced = [
        h.get("reason")
        for r in story.view["recipients"]
        for h in r["history"]
        if h["status"] == "bounced"
    ]
    assert matched.attributes["hato.bounce.reasons"] == bounced != [""]
    # The link names the report consumer's span, a child of the report's SMTP session.
    read = one(traced.otlp.spans, span_id=matched.links[0].span_id)
    assert (read.service, read.kind) == ("hato-bounce", "consumer")
    assert read.attributes["hato.report.kind"] == "dsn"
    report = one(traced.otlp.spans, name="smtp report", span_id=read.parent_span_id)
    assert report.trace_id == read.trace_id != story.caller_trace
    assert report.service == "hato-bounce"

    # Causal order: each span on the way from the request to the webhook POST starts after
    # its parent did, and the services follow one another.
    chain, span = [], post
    while span.parent_span_id in by_id:
        chain.append(span)
        span = by_id[span.parent_span_id]
    chain = [span, *reversed(chain)]
    assert chain[0] is request
    assert all(a.start <= b.start for a, b in itertools.pairwise(chain))
    services = [s.service for s in chain]
    assert sorted(set(services), key=services.index) == [f"hato-{n}" for n in SERVICES]
    assert all(s.trace_id == story.caller_trace for s in spans)


async def test_a_mail_over_smtp_starts_its_trace_at_data(traced: Traced) -> None:
    """Without a caller's context the SMTP transaction is the root: the DATA span (server
    kind, with the client's address and the reply), accept under it, and the message's
    record names that trace."""
    address = f"{unique('smtp')}@{DOMAIN}"
    outcome = await smtp_send(traced.smtp_port, rcpts=(address,), data=make_message(to=address))
    message_id = outcome.queued_id
    message = await eventually(lambda: traced.store.messages.message(message_id), until=bool)
    spans = await spans_of(traced, message["trace_id"], "smtp DATA", "accept", "dkim sign")
    data = one(spans, name="smtp DATA")
    assert (data.service, data.kind, data.parent_span_id) == ("hato-ingest", "server", "")
    assert data.attributes["client.address"] == "127.0.0.1"
    assert data.attributes["smtp.reply.code"] == 250
    accept = one(spans, name="accept", parent_span_id=data.span_id)
    assert accept.attributes["hato.door"] == "smtp"
    # (flags 03: sampled, and a random trace id, W3C Trace Context level 2)
    assert message["traceparent"] == f"00-{message['trace_id']}-{accept.span_id}-03"


async def test_a_platform_teams_traceparent_in_amqp_headers_is_honoured(traced: Traced) -> None:
    """A message published to the submit exchange with a `traceparent` header: the submit
    queue's consumer span is a child of the team's span, accept under it, signing after."""
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    address = f"{unique('amqp')}@{DOMAIN}"
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{traced.stack.env['HATO_AMQP_PREFIX']}.submit")
        await exchange.publish(
            aio_pika.Message(
                json.dumps(
                    {
                        "api_key": traced.key,
                        "message": {
                            "from": "orders@shop.test",
                            "to": [address],
                            "subject": "Traced over AMQP",
                            "text": "Follow me.",
                        },
                    }
                ).encode(),
                content_type="application/json",
                headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="",
        )
    # The consumer span ends (and is exported) after the accept and signing spans it caused.
    submit_name = f"{traced.stack.env['HATO_AMQP_PREFIX']}.submit process"
    spans = await spans_of(traced, caller_trace, "accept", "dkim sign", submit_name)
    submit = one(spans, parent_span_id=caller_span)
    assert (submit.service, submit.kind) == ("hato-ingest", "consumer")
    assert submit.name.endswith(".submit process")
    accept = one(spans, name="accept", parent_span_id=submit.span_id)
    assert accept.attributes["hato.door"] == "amqp"
    message = await traced.store.messages.message(accept.attributes["hato.message_id"])
    assert message["trace_id"] == caller_trace


async def report(traced: Traced, rcpt: str, body: bytes) -> None:
    """A report as a remote server sends it to the bounce listener: MAIL FROM:<>, accepted."""
    session = await RawSession.open(traced.bounce_port)
    await session.cmd("EHLO mx.trace.test")
    await session.cmd("MAIL FROM:<>")
    assert (await session.cmd(f"RCPT TO:<{rcpt}>"))[0].startswith("250")
    await session.cmd("DATA")
    await session.send(body + b".\r\n")
    assert (await session.reply())[0].startswith("250")
    await session.close()


async def test_a_complaint_is_matched_back_into_the_mails_trace(traced: Traced) -> None:
    """A complaint (ARF) to the feedback-loop address, naming the mail by its return path in
    the original's headers: a `complaint matched` span under the mail's accept span, linked
    to the report's SMTP session, which is a trace of its own."""
    address = f"{unique('angry')}@{DOMAIN}"
    outcome = await smtp_send(traced.smtp_port, rcpts=(address,), data=make_message(to=address))
    message = await eventually(lambda: traced.store.messages.message(outcome.queued_id), until=bool)
    return_path = (
        await eventually(
            lambda: asyncio.sleep(
                0, [r.mail_from for r in traced.sink.received if address in r.rcpt_tos]
            ),
            until=bool,
        )
    )[0]
    arf = reports.arf(address, return_path)
    await report(traced, FBL, arf)
    spans = await spans_of(traced, message["trace_id"], "accept", "complaint matched")
    accept = one(spans, name="accept")
    matched = one(spans, name="complaint matched")
    assert (matched.service, matched.parent_span_id) == ("hato-bounce", accept.span_id)
    assert matched.attributes["hato.message_id"] == outcome.queued_id
    assert matched.attributes["hato.report.kind"] == "complaint"
    assert len(matched.attributes["hato.recipient_ids"]) == 1
    read = one(traced.otlp.spans, span_id=matched.links[0].span_id)
    assert read.attributes["hato.report.kind"] == "complaint"
    session = one(traced.otlp.spans, name="smtp report", span_id=read.parent_span_id)
    assert session.trace_id == read.trace_id != message["trace_id"]


def log_lines(traced: Traced) -> list[dict]:
    lines = []
    for process in traced.stack.processes.values():
        for line in process.log().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a traceback's continuation lines
    return lines


async def test_log_lines_name_the_trace_the_message_and_the_tenant(
    traced: Traced, story: Story
) -> None:
    """Every line about the mail, in every service, carries its trace id, message id and
    tenant; no line at info level (or any) names the recipient's address: ids instead."""
    mine = [line for line in log_lines(traced) if line.get("message_id") == story.message_id]
    said = {(line["service"], line["event"]) for line in mine}
    assert {
        ("ingest", "accepted"),
        ("signer", "signed"),
        ("dispatcher", "retrying later"),
        ("dispatcher", "attempted"),
        ("bounce", "feedback"),
    } <= said, said
    for line in mine:
        assert line.get("trace_id") == story.caller_trace, line
        assert line.get("tenant") == TENANT, line
    attempted = [line for line in mine if line["event"] == "attempted"]
    assert [line["outcome"] for line in attempted] == [
        {story.recipient_id: "deferred"},
        {story.recipient_id: "delivered"},
    ]
    feedback = next(line for line in mine if line["event"] == "feedback")
    assert feedback["recipient_id"] == story.recipient_id
    everything = "\n".join(p.log() for p in traced.stack.processes.values())
    assert story.address not in everything

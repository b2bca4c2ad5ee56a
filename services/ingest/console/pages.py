"""The console's pages: sign-in, overview, messages and their timelines, suppressions,
domains, webhooks, API keys and SMTP credentials.

Pages are rendered on the server (Jinja2) and work without JavaScript; ``console.js`` only
shows times in the viewer's time zone and asks before a revoke. They are not operations of
the JSON API: the router is left out of the OpenAPI document. Reads go through the store's
queries the API uses (``shared.views``); changes through the ``shared.admin`` commands, the
same that ``hato`` and the admin API run. A tenant user sees its own tenant only: another
tenant's message is a 404, like one that does not exist.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from services.ingest.console.i18n import LANG_COOKIE, LANGUAGES, language, translator
from services.ingest.console.sessions import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_LIFETIME,
    Sessions,
    SignInRefused,
    Viewer,
    csrf_ok,
)
from services.ingest.http.webhooks import replay_range
from shared import dkim
from shared import logging as hlog
from shared.admin import Commands
from shared.domain_health import suggested_dmarc
from shared.metrics import provider_group
from shared.provisioning import ProvisioningError
from shared.schemas import RecipientStatus
from shared.store import Store
from shared.views import message_view, with_status

log = hlog.get_logger(__name__)

HERE = Path(__file__).parent
PAGE = 50  # messages on a page
SUPPRESSIONS_PAGE = 100
EXPORT_CAP = 100_000  # suppressions in one CSV export
OVERVIEW_CAP = 200_000  # events counted for the overview
CHART_TYPES = ("accepted", "delivered", "deferred", "bounced", "complained")
# Every page: no script, style or frame from elsewhere, never inside another site's frame.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

router = APIRouter(prefix="/console", include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Console:
    """What the pages work with: ``secure_cookies`` marks cookies Secure even over plain
    HTTP (TLS ends at a proxy in front); ``grafana_url`` is linked from the overview."""

    store: Store
    sessions: Sessions
    templates: Jinja2Templates
    secure_cookies: bool = False
    grafana_url: str = ""


class SignIn(Exception):
    """No session: the browser is sent to the sign-in page."""


class FormRefused(Exception):
    """A POST without the session's CSRF token."""


def mount(
    app: FastAPI, store: Store, *, secure_cookies: bool = False, grafana_url: str = ""
) -> None:
    """Serve the console at /console on ``app``."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
    )
    env.filters["when"] = when
    env.filters["decoded"] = decoded
    env.filters["reply"] = reply_text
    env.filters["selectors"] = lambda v: v if isinstance(v, str) else ", ".join(v or [])
    env.filters["pretty"] = lambda v: json.dumps(v, ensure_ascii=False, indent=1, default=str)
    app.state.console = Console(
        store=store,
        sessions=Sessions(store.db, store.directory),
        templates=Jinja2Templates(env=env),
        secure_cookies=secure_cookies,
        grafana_url=grafana_url,
    )
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)
    app.add_exception_handler(SignIn, _to_sign_in)
    app.add_exception_handler(FormRefused, _form_refused)


# -- helpers the templates use ------------------------------------------------------------------


def when(value: Any) -> Markup:
    """A moment as ``<time>``: UTC in the page, the viewer's zone once console.js ran."""
    if not value:  # None, "" or a field the document lacks
        return Markup("")
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return Markup("{}").format(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return Markup('<time datetime="{}">{}</time>').format(
        value.isoformat(), value.strftime("%Y-%m-%d %H:%M:%S UTC")
    )


def decoded(value: Any) -> str:
    """A header as people read it: RFC 2047 encoded words (``=?ISO-2022-JP?B?...?=``)
    decoded; a header that cannot be decoded as it is."""
    if not value:
        return ""
    text = str(value)
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (UnicodeDecodeError, LookupError, ValueError):
        return text


def reply_text(value: Any) -> str:
    if not value:
        return ""
    if isinstance(value, dict):
        parts = [str(value.get("code", "")), value.get("enhanced", ""), value.get("text", "")]
        return " ".join(p for p in parts if p)
    return str(value)


# -- who is looking ----------------------------------------------------------------------------


def console(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def commands(request: Request) -> Commands:
    found: Commands = request.app.state.admin.commands
    return found


ConsoleDep = Annotated[Console, Depends(console)]
CommandsDep = Annotated[Commands, Depends(commands)]


async def signed_in(request: Request, c: ConsoleDep) -> Viewer:
    viewer = await c.sessions.viewer(request.cookies.get(SESSION_COOKIE, ""))
    if viewer is None:
        raise SignIn()
    hlog.bind(console_user=viewer.email)
    return viewer


ViewerDep = Annotated[Viewer, Depends(signed_in)]


async def form(request: Request, viewer: ViewerDep) -> dict[str, str]:
    """A POSTed form whose CSRF token is the session's (else FormRefused)."""
    data = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    if not csrf_ok(viewer.csrf, data.get("csrf", "")):
        raise FormRefused()
    return data


FormDep = Annotated[dict[str, str], Depends(form)]


async def _to_sign_in(request: Request, _: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/console/login?next={quote(target)}", status_code=303)


async def _form_refused(request: Request, _: Exception) -> Response:
    t = translator(_lang(request))
    return HTMLResponse(t("The form expired: please try again."), status_code=403)


def _lang(request: Request) -> str:
    return language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def _secure(request: Request, c: Console) -> bool:
    return c.secure_cookies or request.url.scheme == "https"


def _local_path(target: str | None, default: str = "/console/messages") -> str:
    """Only a path inside the console (never another site) to go back to."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console"):
        return default
    return target


async def _scope(viewer: Viewer, cmd: Commands) -> tuple[str | None, list[str]]:
    """The tenant the pages show, and (for an operator) the tenants to pick from."""
    if not viewer.operator:
        return viewer.tenant, []
    names = [t["name"] for t in await cmd.tenants()]
    scope = viewer.viewing if viewer.viewing in names else (names[0] if names else None)
    return scope, names


async def render(
    request: Request,
    c: Console,
    cmd: Commands | None,
    viewer: Viewer | None,
    template: str,
    status_code: int = 200,
    **context: Any,
) -> Response:
    lang = _lang(request)
    scope, tenants = await _scope(viewer, cmd) if viewer and cmd else (None, [])
    return c.templates.TemplateResponse(
        request,
        template,
        {
            "t": translator(lang),
            "lang": lang,
            "languages": LANGUAGES,
            "viewer": viewer,
            "scope": scope,
            "tenants": tenants,
            "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            "grafana_url": c.grafana_url,
            **context,
        },
        status_code=status_code,
        headers=PAGE_HEADERS,
    )


async def _not_found(request: Request, c: Console, cmd: Commands, viewer: Viewer) -> Response:
    return await render(request, c, cmd, viewer, "not_found.html", status_code=404)


# -- sign-in and the switches -------------------------------------------------------------------


@router.get("")
async def home() -> Response:
    return RedirectResponse("/console/overview", status_code=303)


@router.get("/login")
async def login_page(request: Request, c: ConsoleDep, next: str = "") -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = await render(
        request, c, None, None, "login.html", csrf=token, next=_local_path(next), error=""
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=_secure(request, c),
    )
    return response


@router.post("/login")
async def login(request: Request, c: ConsoleDep) -> Response:
    data = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    t = translator(_lang(request))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    target = _local_path(data.get("next"))
    if not csrf_ok(expected, data.get("csrf", "")):
        return await render(
            request, c, None, None, "login.html", status_code=403,
            csrf=expected, next=target, error=t("The form expired: please try again."),
        )  # fmt: skip
    client = request.client.host if request.client else ""
    try:
        token, viewer = await c.sessions.sign_in(
            data.get("email", ""), data.get("password", ""), client=client
        )
    except SignInRefused as refused:
        log.info("console sign-in refused", client=client, locked=refused.locked)
        error = (
            t("Too many failed sign-ins: try again later.")
            if refused.locked
            else t("Wrong email or password.")
        )
        return await render(
            request, c, None, None, "login.html", status_code=401,
            csrf=expected, next=target, error=error,
        )  # fmt: skip
    log.info("console sign-in", user=viewer.email, operator=viewer.operator)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/console",
        httponly=True,
        samesite="strict",
        secure=_secure(request, c),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console")
    return response


@router.post("/logout")
async def logout(request: Request, c: ConsoleDep, viewer: ViewerDep, _: FormDep) -> Response:
    await c.sessions.sign_out(viewer)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


@router.get("/lang/{code}")
async def switch_language(request: Request, code: str, c: ConsoleDep, next: str = "") -> Response:
    response = RedirectResponse(_local_path(next), status_code=303)
    if code in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE,
            code,
            max_age=365 * 86400,
            path="/console",
            samesite="strict",
            secure=_secure(request, c),
        )
    return response


@router.post("/tenant")
async def pick_tenant(
    c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep, data: FormDep
) -> Response:
    if viewer.operator and data.get("tenant") in [t["name"] for t in await cmd.tenants()]:
        await c.sessions.view(viewer, data["tenant"])
    return RedirectResponse(_local_path(data.get("next")), status_code=303)


# -- overview -----------------------------------------------------------------------------------


@router.get("/overview")
async def overview(
    request: Request, c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep
) -> Response:
    scope, _ = await _scope(viewer, cmd)
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    counts, seen = await c.store.events.counts(
        midnight,
        CHART_TYPES,
        tenant=None if viewer.operator else viewer.tenant,
        cap=OVERVIEW_CAP,
    )
    rows = [(tenant, [counts[tenant].get(k, 0) for k in CHART_TYPES]) for tenant in sorted(counts)]
    chosen = counts.get(scope or "", {})
    report = await c.store.events.destination_report(scope, midnight, now) if scope else []
    reasons = by_provider(report)
    return await render(
        request, c, cmd, viewer, "overview.html",
        rows=rows, types=CHART_TYPES, chart=_chart([(k, chosen.get(k, 0)) for k in CHART_TYPES]),
        reasons=reasons[:15], capped=seen >= OVERVIEW_CAP, cap=OVERVIEW_CAP,
    )  # fmt: skip


def by_provider(report: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deferrals and bounces by destination domain and reason, summed per provider (the
    metrics' groups: docomo, au, gmail ...); a domain of no known provider stays itself."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for r in report:
        group = provider_group(r["domain"])
        counts[(r["domain"] if group == "other" else group, r["type"], r["reason"])] += r["count"]
    return [
        {"provider": p, "type": t, "reason": reason, "count": n}
        for (p, t, reason), n in counts.most_common()
    ]


COLOURS = {
    "accepted": "#4c78a8",
    "delivered": "#54a24b",
    "deferred": "#eeca3b",
    "bounced": "#e45756",
    "complained": "#b279a2",
}


def _chart(values: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """Bars of an inline SVG chart (drawn by the template): label, value, height."""
    top = max((v for _, v in values), default=0) or 1
    return [
        {"label": k, "value": v, "height": round(125 * v / top), "colour": COLOURS[k]}
        for k, v in values
    ]


# -- messages -----------------------------------------------------------------------------------


def _moment(value: str, offset: str) -> datetime | None:
    """A ``datetime-local`` value in the viewer's zone (``offset``: minutes west of UTC, as
    JavaScript's getTimezoneOffset() says; UTC without it)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        try:
            minutes = int(offset or 0)
        except ValueError:
            minutes = 0
        moment = moment.replace(tzinfo=UTC) + timedelta(minutes=minutes)
    return moment


@router.get("/messages")
async def messages(
    request: Request,
    c: ConsoleDep,
    cmd: CommandsDep,
    viewer: ViewerDep,
    recipient: str = "",
    sender: str = "",
    subject: str = "",
    message_id: str = "",
    tag: str = "",
    status: str = "",
    since: str = "",
    until: str = "",
    tz: str = "",
    before: str = "",
) -> Response:
    scope, _ = await _scope(viewer, cmd)
    found: list[dict[str, Any]] = []
    if scope:
        docs = await c.store.messages.list_messages(
            scope,
            recipient=recipient.strip() or None,
            sender=sender.strip() or None,
            subject=subject.strip() or None,
            message_id_header=message_id.strip() or None,
            tag=tag.strip() or None,
            status=status if status in {s.value for s in RecipientStatus} else None,
            since=_moment(since, tz),
            until=_moment(until, tz),
            before=before or None,
            limit=PAGE,
        )
        found = await with_status(c.store, docs)
    params = {
        k: v
        for k, v in {
            "recipient": recipient, "sender": sender, "subject": subject,
            "message_id": message_id, "tag": tag, "status": status,
            "since": since, "until": until, "tz": tz,
        }.items()
        if v
    }  # fmt: skip
    following = None
    if len(found) == PAGE:
        following = "&".join(
            f"{k}={quote(v)}" for k, v in {**params, "before": found[-1]["id"]}.items()
        )
    return await render(
        request, c, cmd, viewer, "messages.html",
        messages=found, q=params, statuses=[s.value for s in RecipientStatus], next=following,
    )  # fmt: skip


@router.get("/messages/{message_id}")
async def message(
    request: Request, message_id: str, c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep
) -> Response:
    view = await message_view(c.store, message_id)
    if view is None or not (viewer.operator or view.get("tenant") == viewer.tenant):
        return await _not_found(request, c, cmd, viewer)
    hooks = await c.store.webhooks.of(view.get("tenant"))
    deliveries = []
    if hooks:
        deliveries = (
            await c.store.db.webhook_deliveries.find(
                {"webhook": {"$in": [h["_id"] for h in hooks]}, "event.message_id": message_id}
            )
            .limit(100)
            .to_list()
        )
    urls = {h["_id"]: h["url"] for h in hooks}
    return await render(
        request, c, cmd, viewer, "message.html",
        m=view, deliveries=deliveries, urls=urls,
    )  # fmt: skip


# -- suppressions -------------------------------------------------------------------------------


@router.get("/suppressions")
async def suppressions(
    request: Request,
    c: ConsoleDep,
    cmd: CommandsDep,
    viewer: ViewerDep,
    q: str = "",
    after: str = "",
    done: str = "",
    address: str = "",
) -> Response:
    scope, _ = await _scope(viewer, cmd)
    items: list[dict[str, Any]] = []
    if scope:
        if q:  # an address, or the start of one: the first page of those from there
            items = [
                s
                for s in await cmd.suppressions(
                    scope, after=_before(q.lower()), limit=SUPPRESSIONS_PAGE
                )
                if s["address"].startswith(q.lower())
            ]
        else:
            items = await cmd.suppressions(scope, after=after, limit=SUPPRESSIONS_PAGE)
    following = items[-1]["address"] if len(items) == SUPPRESSIONS_PAGE and not q else None
    return await render(
        request, c, cmd, viewer, "suppressions.html",
        items=items, q=q, next=following, done=done, address=address,
    )  # fmt: skip


def _before(prefix: str) -> str:
    """The largest string below every address that starts with ``prefix``."""
    if not prefix or prefix[-1] == "\x00":
        return prefix[:-1]
    return prefix[:-1] + chr(ord(prefix[-1]) - 1) + "\U0010ffff"


@router.post("/suppressions")
async def add_suppression(
    c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep, data: FormDep
) -> Response:
    scope, _ = await _scope(viewer, cmd)
    address = data.get("address", "").strip()
    if not scope or "@" not in address or len(address) > 254:
        return RedirectResponse("/console/suppressions", status_code=303)
    added = await cmd.suppress(
        scope,
        address,
        reason=data.get("reason", "").strip()[:200] or "manual",
        source="console" if not viewer.operator else "admin",
    )
    return RedirectResponse(
        f"/console/suppressions?done=added&address={quote(added)}", status_code=303
    )


@router.get("/suppressions/remove")
async def confirm_unsuppress(
    request: Request,
    c: ConsoleDep,
    cmd: CommandsDep,
    viewer: ViewerDep,
    address: str = "",
    scope: str = "",
) -> Response:
    return await render(
        request, c, cmd, viewer, "confirm_remove.html", address=address, list_scope=scope
    )


@router.post("/suppressions/remove")
async def unsuppress(c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep, data: FormDep) -> Response:
    scope, _ = await _scope(viewer, cmd)
    address = data.get("address", "")
    if scope:
        try:
            address = await cmd.unsuppress(scope, address, scope=data.get("scope") or None)
        except ProvisioningError:
            pass  # already lifted: the list says so
    return RedirectResponse(
        f"/console/suppressions?done=removed&address={quote(address)}", status_code=303
    )


@router.get("/suppressions.csv")
async def export_suppressions(c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep) -> Response:
    scope, _ = await _scope(viewer, cmd)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["address", "reason", "source", "created_at", "expires_at", "scope"])
    after, written = "", 0
    while scope and written < EXPORT_CAP:
        page = await cmd.suppressions(scope, after=after, limit=1000)
        for s in page:
            writer.writerow(
                [s["address"], s.get("reason") or "", s.get("source") or "",
                 _iso(s.get("created_at")), _iso(s.get("expires_at")), s.get("scope") or ""]
            )  # fmt: skip
        written += len(page)
        if len(page) < 1000:
            break
        after = page[-1]["address"]
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="suppressions-{scope or "none"}.csv"',
            "Cache-Control": "no-store",
        },
    )


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


# -- API keys and SMTP credentials --------------------------------------------------------------


def _addresses(value: str) -> list[str]:
    return [a.strip() for a in value.replace("\n", ",").split(",") if a.strip()]


@router.get("/keys")
async def keys(
    request: Request,
    c: ConsoleDep,
    cmd: CommandsDep,
    viewer: ViewerDep,
    done: str = "",
    name: str = "",
) -> Response:
    scope, _ = await _scope(viewer, cmd)
    api_keys = await cmd.api_keys(scope) if scope else []
    smtp_users = await cmd.credentials(scope) if scope else []
    return await render(
        request, c, cmd, viewer, "keys.html",
        api_keys=api_keys, smtp_users=smtp_users, done=done, name=name, secret=None,
    )  # fmt: skip


@router.post("/keys")
async def create_key(
    request: Request, c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep, data: FormDep
) -> Response:
    scope, _ = await _scope(viewer, cmd)
    if not scope:
        return RedirectResponse("/console/keys", status_code=303)
    prefix, token = await cmd.add_api_key(
        scope,
        name=data.get("name", "").strip()[:100],
        allowed_from=_addresses(data.get("allowed_from", "")),
    )
    log.info("console created an API key", tenant=scope, prefix=prefix)
    return await render(
        request, c, cmd, viewer, "keys.html",
        api_keys=await cmd.api_keys(scope), smtp_users=await cmd.credentials(scope),
        done="", name="", secret={"what": "api", "value": token, "name": prefix},
    )  # fmt: skip


@router.post("/keys/revoke")
async def revoke_key(c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep, data: FormDep) -> Response:
    scope, _ = await _scope(viewer, cmd)
    prefix = data.get("prefix", "")
    if scope:
        try:
            await cmd.revoke_api_key(prefix, scope)
        except ProvisioningError:
            pass
    return RedirectResponse(f"/console/keys?done=revoked&name={quote(prefix)}", status_code=303)


@router.post("/credentials")
async def create_credential(
    request: Request, c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep, data: FormDep
) -> Response:
    scope, _ = await _scope(viewer, cmd)
    username = data.get("username", "").strip()
    error = ""
    secret = None
    if scope:
        try:
            password = await cmd.add_credential(
                scope, username, allowed_from=_addresses(data.get("allowed_from", ""))
            )
            secret = {"what": "smtp", "value": password, "name": username}
        except ProvisioningError as exc:
            error = str(exc)
    return await render(
        request, c, cmd, viewer, "keys.html",
        api_keys=await cmd.api_keys(scope) if scope else [],
        smtp_users=await cmd.credentials(scope) if scope else [],
        done="", name="", secret=secret, error=error,
    )  # fmt: skip


@router.post("/credentials/remove")
async def remove_credential(
    c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep, data: FormDep
) -> Response:
    scope, _ = await _scope(viewer, cmd)
    username = data.get("username", "")
    if scope:
        try:
            await cmd.remove_credential(username, scope)
        except ProvisioningError:
            pass
    return RedirectResponse(f"/console/keys?done=removed&name={quote(username)}", status_code=303)


# -- domains ------------------------------------------------------------------------------------


async def _domains(cmd: Commands, scope: str | None) -> list[dict[str, Any]]:
    """The tenant's domains with their records to publish, DMARC's first record too (what
    `hato domain check` asks for when there is none)."""
    found = await cmd.domains(scope) if scope else []
    for d in found:
        d["dns_records"] = [*d["dns_records"], suggested_dmarc(d["domain"]).as_dict()]
    return found


@router.get("/domains")
async def domains(request: Request, c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep) -> Response:
    scope, _ = await _scope(viewer, cmd)
    found = await _domains(cmd, scope)
    health = {
        d["_id"]: d
        async for d in c.store.db.domain_health.find({"_id": {"$in": [x["domain"] for x in found]}})
    }
    return await render(
        request, c, cmd, viewer, "domains.html",
        domains=found, health=health, checked=None,
    )  # fmt: skip


@router.post("/domains/check")
async def check_domain(
    request: Request, c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep, data: FormDep
) -> Response:
    scope, _ = await _scope(viewer, cmd)
    found = await _domains(cmd, scope)
    domain = data.get("domain", "")
    checked = None
    if domain in [d["domain"] for d in found]:
        checked = (await cmd.check_domain(domain, tenant=scope)).as_dict()
    health = {
        d["_id"]: d
        async for d in c.store.db.domain_health.find({"_id": {"$in": [x["domain"] for x in found]}})
    }
    return await render(
        request, c, cmd, viewer, "domains.html",
        domains=found, health=health, checked=checked,
    )  # fmt: skip


@router.post("/domains/rotate")
async def rotate_key(c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep, data: FormDep) -> Response:
    scope, _ = await _scope(viewer, cmd)
    domain = data.get("domain", "")
    if domain in [d["domain"] for d in (await cmd.domains(scope) if scope else [])]:
        algorithm = dkim.ED25519 if data.get("algorithm") == dkim.ED25519 else dkim.RSA
        await cmd.rotate_key(domain, algorithm)
    return RedirectResponse("/console/domains", status_code=303)


# -- webhooks -----------------------------------------------------------------------------------


@router.get("/webhooks")
async def webhooks(
    request: Request, c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep, queued: str = ""
) -> Response:
    scope, _ = await _scope(viewer, cmd)
    hooks = await c.store.webhooks.of(scope) if scope else []
    logs = {h["_id"]: await c.store.webhooks.log(h["_id"], limit=20) for h in hooks}
    return await render(
        request, c, cmd, viewer, "webhooks.html", hooks=hooks, logs=logs, queued=queued
    )


@router.post("/webhooks/replay")
async def replay(c: ConsoleDep, cmd: CommandsDep, viewer: ViewerDep, data: FormDep) -> Response:
    scope, _ = await _scope(viewer, cmd)
    hook = await c.store.webhooks.get(data.get("webhook", ""))
    since = _moment(data.get("since", ""), data.get("tz", ""))
    until = _moment(data.get("until", ""), data.get("tz", ""))
    queued = 0
    if hook is not None and hook["tenant"] == scope and since and until and since < until:
        queued = (await replay_range(c.store, hook, since, until))["queued"]
    return RedirectResponse(f"/console/webhooks?queued={queued}", status_code=303)

"""The one-click unsubscribe endpoint, ``/u/{token}``: the link in each recipient's signed
``List-Unsubscribe`` field (``shared/unsubscribe.py``). No API key: the token is the
authority, checked in constant time and without the database.

- ``POST`` with the form body ``List-Unsubscribe=One-Click`` (RFC 8058 3.2, what Gmail and
  Yahoo send) unsubscribes at once: no login, no confirmation, idempotent (a repeat answers the
  same and emits nothing).
- ``GET`` changes nothing (link scanners and prefetchers follow links): it shows a small page,
  in Japanese or English by ``Accept-Language``, whose button makes that POST; or the same as
  JSON for ``Accept: application/json``.

A token that is not genuine is 404; a POST without the one-click body is 400.
"""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from services.ingest.http.deps import DoorDep
from services.ingest.http.problems import Problem, problems
from shared import logging as hlog
from shared.errors import TRANSIENT_ERRORS, Unavailable
from shared.unsubscribe import ONE_CLICK, Ticket, shown, unsubscribe

log = hlog.get_logger(__name__)
router = APIRouter(tags=["unsubscribe"])

MAX_BODY = 4096  # the one-click body is 26 octets; a form with more is not one
HTML = "text/html"
Token = Annotated[
    str,
    Path(pattern=r"^[A-Za-z0-9_-]{1,600}$", description="The token of the link (base64url)."),
]


class UnsubscribeLink(BaseModel):
    """What a genuine link is for (``GET``), or what a ``POST`` of it did."""

    list: str = Field(description="The list the recipient leaves (`tag:<tag>`: a tag).")
    unsubscribed: bool = Field(description="True once the POST is done (false on GET).")


_PAGES = {
    "en": {
        "lang": "en",
        "title": "Unsubscribe",
        "ask": "Stop receiving mail from the list “{list}”?",
        "button": "Unsubscribe",
        "done": "You are unsubscribed from the list “{list}”. You will receive no more of it.",
    },
    "ja": {
        "lang": "ja",
        "title": "配信停止",
        "ask": "リスト「{list}」からのメール配信を停止しますか？",  # noqa: RUF001
        "button": "配信を停止する",
        "done": "リスト「{list}」の配信を停止しました。今後このリストのメールは届きません。",
    },
}


def language(accept_language: str) -> str:
    """``ja`` when the reader prefers Japanese to English (``Accept-Language`` by q), else
    ``en``."""
    best, best_q = "en", -1.0
    for i, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        lang = tag.strip().lower().split("-")[0]
        if lang in _PAGES and q > best_q and q > 0:
            best, best_q = lang, q - i * 1e-6  # earlier wins a tie
    return best


def page(lang: str, list_: str, *, done: bool) -> str:
    """The small HTML page: the question with a button that POSTs, or the answer."""
    words = _PAGES[lang]
    name = html.escape(list_)
    if done:
        main = f"<p>{html.escape(words['done']).replace('{list}', name)}</p>"
    else:
        main = (
            f"<p>{html.escape(words['ask']).replace('{list}', name)}</p>\n"
            '<form method="post">'
            f'<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">{html.escape(words["button"])}</button></form>'
        )
    return (
        f'<!doctype html>\n<html lang="{words["lang"]}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(words['title'])}</title></head>\n<body>\n{main}\n</body></html>\n"
    )


def _wants_html(accept: str) -> bool:
    return HTML in accept or ("application/json" not in accept and "*/*" not in accept)


def _ticket(door: Any, token: str) -> Ticket:
    ticket = door.unsubscribe.parse_link(token) if door.unsubscribe is not None else None
    if ticket is None:
        raise Problem(404, "no such unsubscribe link")
    return ticket


_ANSWERS = {
    "description": "The link's list, as JSON, or a page in Japanese or English.",
    "content": {HTML: {"schema": {"type": "string"}}},
}


@router.get(
    "/u/{token}",
    response_model=UnsubscribeLink,
    responses={
        200: _ANSWERS,
        **problems(
            (400, "The token is not spelt as one (base64url, at most 600 characters)."),
            (404, "Not a genuine unsubscribe link."),
        ),
    },
)
async def show(
    token: Token,
    door: DoorDep,
    accept: Annotated[str, Header()] = "",
    accept_language: Annotated[str, Header()] = "",
) -> Response:
    """A page asking whether to unsubscribe, with a button that does (changes nothing)."""
    ticket = _ticket(door, token)
    if _wants_html(accept):
        return HTMLResponse(page(language(accept_language), shown(ticket.list), done=False))
    return JSONResponse(UnsubscribeLink(list=ticket.list, unsubscribed=False).model_dump())


@router.post(
    "/u/{token}",
    response_model=UnsubscribeLink,
    responses={
        200: _ANSWERS,
        **problems(
            (
                400,
                "The body is not the one-click form `List-Unsubscribe=One-Click`, or the "
                "token is not spelt as one.",
            ),
            (404, "Not a genuine unsubscribe link."),
            413,
            503,
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}
                        },
                        "required": ["List-Unsubscribe"],
                    }
                }
            },
        }
    },
)
async def one_click(
    token: Token,
    request: Request,
    door: DoorDep,
    accept: Annotated[str, Header()] = "",
    accept_language: Annotated[str, Header()] = "",
) -> Response:
    """Unsubscribe at once (RFC 8058): the address goes on the tenant's suppression list for
    the list, and an ``unsubscribed`` event says so; a repeat changes nothing."""
    ticket = _ticket(door, token)
    body = await _body(request)
    form = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
    if ("List-Unsubscribe", "One-Click") not in form:
        raise Problem(400, f"a one-click unsubscribe POSTs the form body {ONE_CLICK!r}")
    if door.timeline is None:
        raise Problem(503, "unsubscribing is not available here; try again")
    try:
        await unsubscribe(door.store.suppressions, door.timeline, ticket, source="one-click")
    except (Unavailable, *TRANSIENT_ERRORS):
        log.warning("unsubscribe not recorded; the client is told to retry")
        raise Problem(503, "the unsubscribe could not be recorded; try again") from None
    log.info("unsubscribed", tenant=ticket.tenant, list=ticket.list, source="one-click")
    if _wants_html(accept):
        return HTMLResponse(page(language(accept_language), shown(ticket.list), done=True))
    return JSONResponse(UnsubscribeLink(list=ticket.list, unsubscribed=True).model_dump())


async def _body(request: Request) -> bytes:
    """The body, refused (413) past ``MAX_BODY``: this route is outside the Gate's limits."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise Problem(413, f"the request body is over {MAX_BODY} bytes for this route")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise Problem(413, f"the request body is over {MAX_BODY} bytes for this route")
    return body

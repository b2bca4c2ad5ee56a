"""The shape of ``hato``'s command table: a command is a row (its words, arguments, the call
it makes, how its result prints), and its failures end in an exit code by their kind."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import pymongo.errors

from shared.directory import DuplicateError
from shared.errors import Unavailable
from shared.provisioning import Conflict, Invalid, NotFound


class Exit(IntEnum):
    """What ``hato`` exits with: scripts tell kinds of failure apart by it."""

    OK = 0
    FAILED = 1  # the answer is no (a check found problems) or the command failed otherwise
    USAGE = 2  # bad arguments, or values the rules refuse (a pool that does not exist ...)
    NOT_FOUND = 3  # the tenant, domain, key, user ... named does not exist
    CONFLICT = 4  # it would take or replace what exists (a tenant's name, another's domain)
    UNAVAILABLE = 5  # the database, RabbitMQ or its management API cannot be reached


EPILOG = (
    "exit codes: 0 ok, 1 failed (or a check found problems), 2 usage or invalid values, "
    "3 not found, 4 conflict, 5 database or broker unavailable. Read commands take --json."
)


class Failure(Exception):
    """Raised by a command that cannot go on: ``hato: <message>`` on stderr, exit ``code``."""

    def __init__(self, message: str, code: Exit = Exit.FAILED) -> None:
        super().__init__(message)
        self.code = code


def out(obj: Any) -> None:
    """``obj`` as indented JSON on stdout (what ``--json`` prints)."""
    if hasattr(obj, "as_dict"):
        obj = obj.as_dict()
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


def note(message: str) -> None:
    print(f"hato: {message}", file=sys.stderr)


Show = Callable[[Any, argparse.Namespace, Any], "int | None"]
"""Prints a command's result for a person; returns the exit code when it is not 0."""

Call = Callable[[Any, argparse.Namespace], Awaitable[Any]]
"""A command's call: of the context (``hato.cli.Context``) and the arguments."""


@dataclass(frozen=True, slots=True)
class Arg:
    """One argparse argument: its names and options."""

    names: tuple[str, ...]
    options: dict[str, Any]


def arg(*names: str, **options: Any) -> Arg:
    return Arg(names, options)


@dataclass(frozen=True, slots=True)
class Command:
    """A command: its words (``tenant add``), help, arguments, the call it makes and how its
    result prints (``show``; without one, the call printed and returned the exit code).
    ``reads``: it only reads — it makes no index and takes ``--json``. ``plain``: it runs
    without the store (a sync function of the arguments)."""

    words: str
    help: str
    call: Call | Callable[[argparse.Namespace], int]
    args: tuple[Arg, ...] = ()
    show: Show | None = None
    reads: bool = False
    plain: bool = False


def says(template: str) -> Show:
    """A line made of the arguments (and ``{result}``)."""

    def show(result: Any, args: argparse.Namespace, _: Any) -> None:
        print(template.format(result=result, **vars(args)))

    return show


def exit_code(exc: BaseException) -> Exit:
    """The exit code of a failure, by its kind."""
    if isinstance(exc, Failure):
        return exc.code
    if isinstance(exc, NotFound):
        return Exit.NOT_FOUND
    if isinstance(exc, (Conflict, DuplicateError)):
        return Exit.CONFLICT
    if isinstance(exc, (Invalid, ValueError)):
        return Exit.USAGE
    if isinstance(exc, (Unavailable, pymongo.errors.ConnectionFailure)):
        return Exit.UNAVAILABLE
    return Exit.FAILED

"""A small ordered router: full-match regular expressions per HTTP method.

OVMS answers only GET and POST; a path that exists for another method gets
``406 Unsupported method`` and an unknown path ``404 Requested REST resource not found``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ovserve.errors import ErrorCode
from ovserve.frontends.rest.http import Request, Response, rest_error

Handler = Callable[[Request, "re.Match[str]"], Awaitable[Response]]

METHODS = ("GET", "POST")


@dataclass(frozen=True, slots=True)
class Route:
    """One method on one path pattern; named groups ``name`` and ``version`` when present."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler


def route(method: str, pattern: str, handler: Handler) -> Route:
    """A route whose pattern must match the whole path."""
    return Route(method, re.compile(pattern), handler)


class Router:
    """First matching route wins; the hot paths go first."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = tuple(routes)

    def resolve(self, method: str, path: str) -> tuple[Route, re.Match[str]]:
        """The route and its match; raises 406 or 404 in OVMS's words."""
        if method not in METHODS:
            raise rest_error(ErrorCode.REST_UNSUPPORTED_METHOD)
        path_exists = False
        for candidate in self._routes:
            match = candidate.pattern.fullmatch(path)
            if match is None:
                continue
            if candidate.method == method:
                return candidate, match
            path_exists = True
        if path_exists:
            raise rest_error(ErrorCode.REST_UNSUPPORTED_METHOD)
        raise rest_error(ErrorCode.REST_NOT_FOUND)


def version_of(match: re.Match[str]) -> int | None:
    """The ``version`` group as a number; absent or 0 means the default version."""
    text = match.group("version")
    return int(text) or None if text else None

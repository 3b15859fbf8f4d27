"""What every page of the console shares: who may see it, the page or its htmx partial, not found, and
the answer that stops an htmx poller (docs/architecture.md, "Pages").
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import orjson
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect

from core.roles import Can, require

# htmx stops polling an element whose request is answered with this status.
STOP_POLLING = 286


def role_required(view: Callable | None = None, *, can: Can = Can.READ) -> Callable:
    """Django's login_required, then the role check (`can`, reading by default: see core/roles.py);
    and an htmx request from a lapsed session (a tail poll after logging out elsewhere) sends the whole
    window to the login form instead of swapping it into a table."""
    if view is None:
        return functools.partial(role_required, can=can)
    page_view = login_required(require(can)(view))

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.htmx and not request.user.is_authenticated:
            come_back_to = request.htmx.current_url_abs_path or request.get_full_path()
            return HttpResponseClientRedirect(redirect_to_login(come_back_to)["Location"])
        return page_view(request, *args, **kwargs)

    wrapper.required_capability = can  # type: ignore[attr-defined]
    return wrapper


def render_page(
    request: HttpRequest, page: str, partial: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """The partial for htmx, the whole page otherwise (also when htmx restores history it has not cached)."""
    wants_partial = request.htmx and not request.htmx.history_restore_request
    response = render(request, partial if wants_partial else page, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


def not_found(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "core/not_found.html", {"message": message}, status=404)


def stop_polling(response: HttpResponse) -> HttpResponse:
    """The poller's last answer: htmx swaps it in and polls no more."""
    response.status_code = STOP_POLLING
    return response


def pretty_json(value: Any, *, sort_keys: bool = False) -> str:
    """JSON indented by two spaces, non-ASCII kept, as a page shows data: written by orjson (a stream's
    page writes 100 documents; the standard encoder's indenting is in Python), and by the standard
    encoder, to the same text, where orjson refuses (an integer past 64 bits, a key that is not a
    string)."""
    try:
        option = orjson.OPT_INDENT_2 | (orjson.OPT_SORT_KEYS if sort_keys else 0)
        return orjson.dumps(value, option=option).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=sort_keys)

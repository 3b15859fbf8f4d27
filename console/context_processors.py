"""What every page's navigation needs: the number of jobs waiting for approval (its badge), and whether
the user may approve or operate (a page shows a control only to those who may use it). Each is a
callable, which templates call when they use it: a partial that never shows the navigation asks
nothing, and a page asks once however often it shows them."""

from __future__ import annotations

import functools
from typing import Any

from django.http import HttpRequest

from core.roles import Can, can
from recovery.approvals import pending_count


def approvals(request: HttpRequest) -> dict[str, Any]:
    return {
        "nav_pending_approvals": functools.cache(pending_count),
        "user_can_approve": functools.cache(lambda: can(request.user, Can.APPROVE)),
        "user_can_operate": functools.cache(lambda: can(request.user, Can.OPERATE)),
    }

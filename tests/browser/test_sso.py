"""Single sign-on against a real OpenID provider on loopback (the `oidc-provider` npm package, run on the
machine's Node by tests/console/oidc_provider.mjs): a user signs in, gets the role the provider's groups
map to, is refused what that role does not allow; a sign-in that maps to no role is refused; local
passwords can be switched off; self-approval stays impossible for someone with both a local account and
an SSO identity; and re-authentication before a decision is a fresh sign-in at the provider."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect

from recovery import services
from recovery.models import Job
from streams.consumers import run_projection
from streams.models import Event
from tests.conftest import PASSWORD, person
from tests.ports import free_port

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / ".ci" / "npm" / "node_modules"
ACCOUNTS = {
    "amy": {"email": "amy@example.com", "groups": ["rd-approvers", "staff"]},
    "sam": {"email": "sam@example.com", "groups": ["rd-support"]},
    "root": {"email": "root@example.com", "groups": ["rd-admins"]},
    "nobody": {"email": "nobody@example.com", "groups": ["staff"]},
}


@pytest.fixture
def provider(live_server, settings, tmp_path):
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "oidc-provider").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("node and .ci/npm's oidc-provider are needed (npm ci --prefix .ci/npm)")
        pytest.skip("node or .ci/npm's oidc-provider is missing (npm ci --prefix .ci/npm)")
    port = free_port()
    log = tmp_path / "oidc.log"
    env = {
        **os.environ,
        "OIDC_NODE_MODULES": str(NODE_MODULES),
        "OIDC_REDIRECT_URI": f"{live_server.url}/oidc/callback/",
        "OIDC_POST_LOGOUT_URI": f"{live_server.url}/login/",
        "OIDC_ACCOUNTS": json.dumps(ACCOUNTS),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [node, str(ROOT / "tests/console/oidc_provider.mjs"), str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while "listening on" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    issuer = f"http://127.0.0.1:{port}"
    settings.OIDC_RP_CLIENT_ID = "replaydesk"
    settings.OIDC_RP_CLIENT_SECRET = "replaydesk-test-secret"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{issuer}/auth"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{issuer}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{issuer}/me"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{issuer}/jwks"
    settings.REPLAYDESK_OIDC_ROLE_MAP = [
        "rd-approvers=approver",
        "rd-operators=operator",
        "rd-support=support",
        "rd-admins=admin",
    ]
    yield issuer
    process.terminate()
    process.wait(timeout=10)


def sign_in(page, account: str) -> None:
    """Through the login page's button and the provider's own login (and consent) forms."""
    page.goto("/login/")
    page.get_by_role("link", name="Sign in with single sign-on").click()
    provider_login(page, account)


# A click that ends the provider's part waits for the navigations it starts: the provider's redirect, then
# the console's callback (which asks the provider for the tokens and the user, maps and audits the roles)
# and the page it leads to. Three processes in turn, longer than the pages' 10 s on a loaded machine.
HANDOVER_MS = 30_000


def provider_login(page, account: str) -> None:
    page.locator('input[name="login"]').fill(account)
    page.locator('input[name="password"]').fill("any password: the provider's development login")
    page.locator('button[type="submit"]').click(timeout=HANDOVER_MS)
    consent = page.locator('form button[type="submit"]', has_text="Continue")
    if page.url.startswith("http://127.0.0.1") and consent.count():
        consent.click(timeout=HANDOVER_MS)


def test_a_user_signs_in_gets_the_mapped_role_and_is_refused_what_it_does_not_allow(page, provider):
    sign_in(page, "sam")

    page.wait_for_url("**/dashboard/")
    expect(page.locator(".account")).to_contain_text("sam")
    sam = get_user_model().objects.get(username="sam")
    assert list(sam.groups.values_list("name", flat=True)) == ["support"]
    assert not sam.has_usable_password()
    mapped = Event.objects.get(stream__name="console-user.sam", type="UserRolesMapped")
    assert (mapped.data["roles"], mapped.data["claim"]) == (["support"], "groups")
    assert Event.objects.filter(stream__name="console-user.sam", type="UserLoggedIn").count() == 1
    response = page.goto("/jobs/new")
    assert response.status == 403


def test_a_sign_in_that_maps_to_no_role_is_refused_and_says_why(page, provider):
    sign_in(page, "nobody")

    page.wait_for_url("**/login/**")
    expect(page.locator("#sso-refused")).to_contain_text("give no Replaydesk role")
    assert not get_user_model().objects.filter(username="nobody").exists()


def test_local_passwords_can_be_switched_off(page, provider, settings, operator):
    settings.REPLAYDESK_LOCAL_LOGIN = False
    settings.AUTHENTICATION_BACKENDS = ["console.oidc.Backend"]

    page.goto("/login/")

    expect(page.get_by_label("Password")).to_have_count(0)
    expect(page.get_by_role("link", name="Sign in with single sign-on")).to_be_visible()
    # A password sent anyway logs nobody in.
    answer = Client().post("/login/", {"username": operator.username, "password": PASSWORD})
    assert answer.status_code == 200 and "_auth_user_id" not in answer.client.session


def test_someone_both_local_and_sso_cannot_approve_their_own_request(page, provider, four_eyes):
    root = person("root", "admin")
    run_projection("users_directory")
    job = services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by="root", reason="names broke"
    )
    Job.objects.filter(pk=job.pk).update(requested_by_user=root)

    sign_in(page, "root")  # the same account, through the provider
    page.wait_for_url("**/dashboard/")
    page.goto(f"/approvals/{job.pk}/")

    expect(page.locator("#decide-title")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("root")
    assert get_user_model().objects.filter(username="root").count() == 1


def test_an_sso_approver_decides_after_a_fresh_sign_in(page, provider, four_eyes, operator, settings):
    settings.REPLAYDESK_REAUTH_SECONDS = 0  # every decision asks again
    run_projection("users_directory")
    job = services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by="olivia", reason="names broke"
    )
    sign_in(page, "amy")
    page.wait_for_url("**/dashboard/")
    page.goto(f"/approvals/{job.pk}/")

    page.get_by_role("link", name="Sign in again to decide").click()
    provider_login(page, "amy")  # the provider asks again (prompt=login, max_age=0)
    page.wait_for_url(f"**/approvals/{job.pk}/")
    settings.REPLAYDESK_REAUTH_SECONDS = 300
    page.reload()
    page.get_by_role("button", name=f"Approve job {job.pk}").click()

    expect(page.locator("main")).to_contain_text(f"You approved job {job.pk}")
    job.refresh_from_db()
    assert job.state in ("queued", "running", "succeeded", "approved")

"""Single sign-on's settings: the group→role map is read strictly, and an entry it cannot read is named."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from console import oidc


def test_the_role_map_maps_groups_to_roles_and_claims_to_roles(settings):
    settings.REPLAYDESK_OIDC_ROLE_MAP = ["ops=operator", "cn=leads,ou=people=approver"]
    settings.REPLAYDESK_OIDC_ROLE_CLAIM = "groups"

    assert oidc.role_map() == {"ops": "operator", "cn=leads,ou=people": "approver"}
    assert oidc.roles_from({"groups": ["ops", "staff"]}) == {"operator"}
    assert oidc.roles_from({"groups": "cn=leads,ou=people"}) == {"approver"}
    assert oidc.roles_from({"groups": 7}) == set()


@pytest.mark.parametrize("entry", ["ops=superuser", "=admin", "ops"])
def test_an_entry_that_names_no_role_is_refused_with_its_text(settings, entry):
    settings.REPLAYDESK_OIDC_ROLE_MAP = [entry]

    with pytest.raises(ImproperlyConfigured, match=f"REPLAYDESK_OIDC_ROLE_MAP: {entry!r} is not group=role"):
        oidc.role_map()

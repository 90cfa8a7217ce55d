"""The accounts page of the admin, at home in the accounts app since it left `projects`."""

import pytest

ACCOUNTS = "/admin/accounts/annotatoraccount/"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("/admin/projects/annotatoraccount/", ACCOUNTS),
        ("/admin/projects/annotatoraccount/create/", ACCOUNTS + "create/"),
        ("/admin/projects/annotatoraccount/?project=3&q=ann", ACCOUNTS + "?project=3&q=ann"),
    ],
)
def test_it_sends_the_old_admin_urls_to_the_new_ones(client, old, new):
    response = client.get(old)
    assert (response.status_code, response["Location"]) == (308, new)


def test_it_shows_the_page_to_a_lead_at_its_new_url(client, project, bob):
    client.force_login(bob)
    assert client.get(ACCOUNTS).status_code == 200
    assert client.get(ACCOUNTS + "create/").status_code == 200

"""Leads racing to demote each other on PostgreSQL: a project never ends up without a lead."""

import pytest
from django.db import connection

from apps.projects.models import Membership, Role
from apps.projects.services import ProjectError, membership_add
from tests.judging.test_concurrency import run_threads

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LEADS = 8
ROUNDS = 5


def test_leads_demoting_each_other_at_once_leave_the_project_a_lead(project, make_user):
    assert connection.vendor == "postgresql"
    leads = [make_user(f"lead{i}") for i in range(LEADS)]
    refused: list[int] = []
    for _ in range(ROUNDS):
        for user in leads:
            membership_add(project=project, user=user, role=Role.LEAD)
        refused.clear()

        def demote(index: int) -> None:
            # Each lead demotes the next one, all at once: a ring with no lead left, unless
            # the checks and the changes are made one at a time.
            try:
                membership_add(
                    project=project,
                    user=leads[(index + 1) % LEADS],
                    role=Role.ANNOTATOR,
                    by=leads[index],
                )
            except ProjectError:
                refused.append(index)

        assert run_threads(demote, LEADS) == []
        remaining = Membership.objects.filter(project=project, role=Role.LEAD, user__in=leads)
        assert remaining.exists()
        assert refused, "every demotion succeeded"

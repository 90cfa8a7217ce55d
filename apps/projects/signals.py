"""What projects tell the apps above them, which projects do not import (README, ARCHITECTURE)."""

from django.dispatch import Signal

# Sent by Project.save inside the transaction of a change of the project's policy, with the
# project's row locked, with `project_id` and `using`: batches gives the project's comparisons
# the new policy (apps.batches.policy_follow), in that transaction or after it.
policy_changed = Signal()

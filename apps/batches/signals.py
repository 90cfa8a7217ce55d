"""What batches tell the apps above them, which batches do not import (README, ARCHITECTURE)."""

from django.dispatch import Signal

# Sent once a batch's rows are stored and committed, with `batch_id`: judging renders its texts.
batch_stored = Signal()

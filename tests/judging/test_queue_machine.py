"""The queue as a state machine: random sequences of next, submit, skip, undo, reclaim,
invalidate, overlap and stopping-confidence changes, checked after every step against a
reference model in plain Python.

The queue runs as PL/pgSQL functions on PostgreSQL and statement by statement on SQLite
(apps/judging/queue/backend.py chooses). A Django process talks to one database, so one run
cannot replay a sequence on both; instead the model below is the common reference. It says,
from the rules alone, what every row must hold after each step (each comparison's counters,
every assignment, judgment and skip, each member's counts) and what each call must return or
raise; CI runs this test on the SQLite leg and on the PostgreSQL leg, so each backend is held to
the same model, and through it to the other.

The queue draws at random (sides, ranks, the random policy's starting point). The model does not
guess those draws: it reads the sides from the lease handed out and the ranks from the rows, and
for the random policy it checks only that the comparison handed out was one the annotator may
take. The gold rate is 0 or 1, so that whether gold is drawn is no draw at all. The draws are
seeded per example (secrets.randbelow, and PostgreSQL's random()) only so that Hypothesis can
run an example again and shrink it.

Each example runs inside a savepoint of the test's transaction, rolled back at its end, so each
starts from an empty project.
"""

import io
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from hypothesis import HealthCheck, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from apps.batches.models import Batch, Comparison
from apps.batches.services import batch_import, batch_priority_set
from apps.judging.models import Assignment, AssignmentStatus, Judgment, Skip

# The queue's public functions, in one block: the queue package may move them.
from apps.judging.queue import (
    UNDO_SECONDS,
    AnnotatorBlocked,
    JudgmentConflict,
    assignment_next,
    assignment_skip,
    judgment_submit,
    judgment_undo,
    judgments_invalidate,
    leases_reclaim_expired,
    overlap_changed,
)
from apps.projects.models import AssignmentPolicy, Membership, gold_stop_reason
from apps.projects.services import membership_add, project_create
from tests.conftest import jsonl, prompt_line

OPEN = AssignmentStatus.OPEN
EXPIRED = AssignmentStatus.EXPIRED
SUBMITTED = AssignmentStatus.SUBMITTED
SKIPPED = AssignmentStatus.SKIPPED
UNDONE = AssignmentStatus.UNDONE

# Any fixed moment: every call is given its `now`, so the rows never depend on the clock.
START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
CHOICES = ["left", "right", "tie", "both_bad"]


# The queue's draws (sides, ranks, the random policy's start), made repeatable: Hypothesis runs
# an example again to shrink it, and must see the same steps enabled each time.
_DRAWS = random.Random()


def _repeatable_randbelow(n: int) -> int:
    return _DRAWS.randrange(n)


def event(label: str) -> None:
    """Counts an outcome for `--hypothesis-show-statistics` (what the runs reached); nothing
    outside a Hypothesis run (the replays below)."""
    if currently_in_test_context():
        hypothesis_event(label)


@dataclass
class Pair:
    """A comparison as imported: what never changes."""

    id: int
    batch: int
    a: int
    b: int
    is_gold: bool
    gold_answer: str


@dataclass
class Lease:
    id: int
    comparison: int
    annotator: int  # the user's id
    left: int
    right: int
    status: str
    expires_at: datetime
    closed_at: datetime | None = None


@dataclass
class Vote:
    id: int
    comparison: int
    annotator: int
    assignment: int
    choice: str
    chosen: int | None
    option: str  # a, b, tie or both_bad: oriented to the candidates
    gold_correct: bool | None
    created_at: datetime
    valid: bool = True


@dataclass
class Member:
    judgment_count: int = 0
    gold_answered: int = 0
    gold_correct: int = 0
    skip_count: int = 0


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._savepoint = transaction.atomic()
        self._savepoint.__enter__()
        self.ready = False
        _DRAWS.seed(12)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # annotate_submit's new ranks: random()
                cursor.execute("SELECT setseed(0.12)")

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._savepoint.__exit__(None, None, None)

    # -- the project ------------------------------------------------------------------------

    @initialize(
        policy=st.sampled_from(list(AssignmentPolicy)),
        overlap=st.integers(1, 3),
        annotators=st.integers(2, 3),
        second_batch=st.booleans(),
        second_first=st.booleans(),
        gold=st.booleans(),
        gold_min_accuracy=st.sampled_from([0.0, 0.5, 1.0]),
        gold_min_answers=st.integers(1, 2),
        lease_seconds=st.sampled_from([30, 400]),
        stop_confidence=st.sampled_from([None, 0.8, 0.9]),
    )
    def setup(
        self,
        policy: str,
        overlap: int,
        annotators: int,
        second_batch: bool,
        second_first: bool,
        gold: bool,
        gold_min_accuracy: float,
        gold_min_answers: int,
        lease_seconds: int,
        stop_confidence: float | None = None,
    ) -> None:
        self.lead = User.objects.create_user("machine-lead")
        self.project = project_create(
            slug="machine",
            name="Machine",
            overlap=overlap,
            lease_seconds=lease_seconds,
            policy=policy,
            gold_rate=1.0 if gold else 0.0,
            gold_min_accuracy=gold_min_accuracy if gold else 0.0,
            gold_min_answers=gold_min_answers,
            stop_confidence=stop_confidence,
        )
        membership_add(project=self.project, user=self.lead, role="lead")
        self.users = [User.objects.create_user(f"machine-{n}") for n in range(annotators)]
        for user in self.users:
            membership_add(project=self.project, user=user, role="annotator")
        # Four ordinary comparisons (a prompt of three candidates, one of two), maybe a gold
        # item; then maybe a second batch of two, served first or second.
        rows = [prompt_line("p-1", n=3), prompt_line("p-2")]
        if gold:
            rows.append({**prompt_line("g-1"), "gold": {"preferred": "c1"}})
        self._import(rows)
        if second_batch:
            batch = self._import([prompt_line("q-1"), prompt_line("q-2")])
            if second_first:
                batch_priority_set(batch=batch, priority=5, by=self.lead)
        self.pairs = {
            c.id: Pair(
                c.id, c.batch_id, c.candidate_a_id, c.candidate_b_id, c.is_gold, c.gold_answer
            )
            for c in Comparison.objects.filter(project=self.project)
        }
        self.batch_order = list(
            Batch.objects.filter(project=self.project)
            .order_by("-priority", "id")
            .values_list("id", flat=True)
        )
        self.now = START
        self.leases: dict[int, Lease] = {}
        self.votes: dict[int, Vote] = {}
        self.skips: set[tuple[int, int, int]] = set()  # (comparison, annotator, assignment)
        self.members = {user.pk: Member() for user in self.users}
        self.ready = True

    def _import(self, rows: list[dict[str, Any]]) -> Batch:
        data = jsonl(*rows)
        return batch_import(
            project=self.project, source=io.BytesIO(data), size=len(data), background=False
        )

    # -- what the model derives -------------------------------------------------------------

    def user(self, n: int, first: Callable[[User], bool]) -> User:
        """The n-th annotator, counting first those for whom the rule does something (so that
        fewer steps are spent on no-ops, and shrinking reaches them first)."""
        ordered = sorted(self.users, key=lambda user: not first(user))
        return ordered[n % len(ordered)]

    def holds_lease(self, user: User) -> bool:
        return any(
            x.annotator == user.pk and x.status == OPEN and x.expires_at > self.now
            for x in self.leases.values()
        )

    def has_valid_vote(self, user: User) -> bool:
        return any(v.annotator == user.pk and v.valid for v in self.votes.values())

    def valid_votes(self, comparison: int) -> list[Vote]:
        return [v for v in self.votes.values() if v.comparison == comparison and v.valid]

    def open_leases(self, comparison: int) -> int:
        return sum(
            1 for x in self.leases.values() if x.comparison == comparison and x.status == OPEN
        )

    def counts(self, pair: Pair) -> dict[str, Any]:
        """The comparison's counters as the rules define them."""
        valid = self.valid_votes(pair.id)
        options = [v.option for v in valid]
        a, b = options.count("a"), options.count("b")
        return {
            "judgment_count": len(valid),
            "lease_count": 0 if pair.is_gold else self.open_leases(pair.id),
            "complete": not pair.is_gold
            and (len(valid) >= self.project.overlap or self.decided(a, b)),
            "votes_a": a,
            "votes_b": b,
            "votes_tie": options.count("tie"),
            "votes_both_bad": options.count("both_bad"),
            "split": abs(a - b) if valid else 1,
            "skip_count": sum(1 for c, _, _ in self.skips if c == pair.id),
        }

    def decided(self, a: int, b: int) -> bool:
        """Adaptive stopping: one side leads by the margin its confidence asks for (the
        posterior 1 / (1 + 0.25^m) reaches it: 0.8 -> 1, 0.9 -> 2)."""
        confidence = self.project.stop_confidence
        if confidence is None:
            return False
        margin = next(m for m in range(1, 10) if 1 / (1 + 0.25**m) >= confidence - 1e-12)
        return abs(a - b) >= margin

    def stopped(self, user: User) -> bool:
        member = self.members[user.pk]
        return bool(
            gold_stop_reason(
                correct=member.gold_correct,
                answered=member.gold_answered,
                min_accuracy=self.project.gold_min_accuracy,
                min_answers=self.project.gold_min_answers,
            )
        )

    def may_take(self, user: User, pair: Pair) -> bool:
        """An ordinary comparison the pick may hand this annotator."""
        counts = self.counts(pair)
        return (
            not pair.is_gold
            and not counts["complete"]
            and counts["judgment_count"] + counts["lease_count"] < self.project.overlap
            and not any(
                v.comparison == pair.id and v.annotator == user.pk for v in self.votes.values()
            )
            and not any(c == pair.id and u == user.pk for c, u, _ in self.skips)
            and not any(
                x.comparison == pair.id and x.annotator == user.pk and x.status == OPEN
                for x in self.leases.values()
            )
        )

    def close(self, lease: Lease, status: str) -> None:
        lease.status, lease.closed_at = status, self.now

    def reclaim(self) -> int:
        expired = [x for x in self.leases.values() if x.status == OPEN and x.expires_at <= self.now]
        for lease in expired:
            self.close(lease, EXPIRED)
        return len(expired)

    def leases_of(self, user: User) -> list[Lease]:
        """The annotator's leases, newest first (what shrinking reaches first)."""
        return sorted(
            (x for x in self.leases.values() if x.annotator == user.pk), key=lambda x: -x.id
        )

    # -- rules ------------------------------------------------------------------------------

    @precondition(lambda self: self.ready)
    @rule(n=st.integers(0, 2))
    def next(self, n: int) -> None:
        self.take(self.user(n, first=lambda user: not self.holds_lease(user)))

    @precondition(lambda self: self.ready)
    @rule(n=st.integers(0, 2), choice=st.sampled_from(CHOICES))
    def next_and_submit(self, n: int, choice: str) -> None:
        """What the judging page does: take the next comparison and answer it."""
        user = self.user(n, first=lambda user: not self.holds_lease(user))
        if lease := self.take(user):
            self.answer(user, lease, choice)

    def take(self, user: User) -> Lease | None:
        """assignment_next, checked against the model; the lease handed out, if any."""
        ranks = dict(Comparison.objects.filter(project=self.project).values_list("id", "rank"))
        held = sorted(
            x.id
            for x in self.leases.values()
            if x.annotator == user.pk and x.status == OPEN and x.expires_at > self.now
        )
        if not held and self.stopped(user):
            event("next: blocked")
            with pytest.raises(AnnotatorBlocked):
                assignment_next(project=self.project, annotator=user, now=self.now)
            return None
        got = assignment_next(project=self.project, annotator=user, now=self.now)
        if held:
            event("next: the open lease again")
            assert got is not None and got.pk == held[0], "the open lease comes back"
            return self.leases[got.pk]
        if self.reclaim():
            event("next: reclaimed expired leases first")
        gold = [
            p.id
            for p in self.pairs.values()
            if p.is_gold
            and not any(
                x.comparison == p.id and x.annotator == user.pk for x in self.leases.values()
            )
        ]
        ordinary = [p for p in self.pairs.values() if self.may_take(user, p)]
        if self.project.gold_rate and gold:
            event("next: gold")
            assert got is not None and got.comparison_id in gold, "a gold item never given"
        elif not ordinary:
            event("next: none left")
            assert got is None, "nothing is left, so nothing is handed out"
            return None
        else:
            event("next: new lease")
            assert got is not None, f"{[p.id for p in ordinary]} were free"
            assert got.comparison_id in {p.id for p in ordinary}
            if self.project.policy != AssignmentPolicy.RANDOM:
                assert got.comparison_id == self.first_by_policy(ordinary, ranks)
        pair = self.pairs[got.comparison_id]
        assert {got.left_id, got.right_id} == {pair.a, pair.b}
        self.leases[got.pk] = Lease(
            got.pk,
            pair.id,
            user.pk,
            got.left_id,
            got.right_id,
            OPEN,
            self.now + timedelta(seconds=self.project.lease_seconds),
        )
        return self.leases[got.pk]

    def first_by_policy(self, free: list[Pair], ranks: dict[int, int]) -> int:
        """The comparison the policy hands out: in the first batch (by priority) with a free
        one, the first in the policy's order."""
        batch = next(b for b in self.batch_order if any(p.batch == b for p in free))

        def key(pair: Pair) -> tuple[int, ...]:
            counts = self.counts(pair)
            filled = counts["judgment_count"] + counts["lease_count"]
            return {
                AssignmentPolicy.BREADTH_FIRST: (filled, ranks[pair.id]),
                AssignmentPolicy.DEPTH_FIRST: (-filled, ranks[pair.id]),
                AssignmentPolicy.UNCERTAIN_FIRST: (counts["split"], filled, ranks[pair.id]),
            }[AssignmentPolicy(self.project.policy)]

        return min((p for p in free if p.batch == batch), key=key).id

    @precondition(lambda self: self.ready and self.leases)
    @rule(n=st.integers(0, 2), pick=st.integers(0, 3), choice=st.sampled_from(CHOICES))
    def submit(self, n: int, pick: int, choice: str) -> None:
        user = self.user(n, first=self.holds_lease)
        mine = self.leases_of(user)
        if not mine:
            return
        self.answer(user, mine[pick % len(mine)], choice)

    def answer(self, user: User, lease: Lease, choice: str) -> None:
        """judgment_submit on one of the annotator's leases, checked against the model."""
        pair = self.pairs[lease.comparison]
        refusal, why = self.submit_refusal(user, lease, pair)
        event(f"submit: {why}")
        if refusal is not None:
            with pytest.raises(refusal):
                judgment_submit(assignment_id=lease.id, annotator=user, choice=choice, now=self.now)
            if refusal is AnnotatorBlocked and lease.status == OPEN:
                self.close(lease, EXPIRED)  # released: its slot goes back to the pool
            return
        result = judgment_submit(
            assignment_id=lease.id, annotator=user, choice=choice, now=self.now
        )
        assert result.created
        chosen = {"left": lease.left, "right": lease.right}.get(choice)
        option = choice if chosen is None else ("a" if chosen == pair.a else "b")
        gold_correct = option == pair.gold_answer if pair.is_gold else None
        self.votes[result.judgment.pk] = Vote(
            result.judgment.pk,
            pair.id,
            user.pk,
            lease.id,
            choice,
            chosen,
            option,
            gold_correct,
            self.now,
        )
        self.close(lease, SUBMITTED)
        member = self.members[user.pk]
        member.judgment_count += 1
        if gold_correct is not None:
            member.gold_answered += 1
            member.gold_correct += int(gold_correct)

    def submit_refusal(
        self, user: User, lease: Lease, pair: Pair
    ) -> tuple[type[Exception] | None, str]:
        """Whether a judgment on this lease is refused (the error's class, or None) and why."""
        if lease.status in (OPEN, EXPIRED) and self.stopped(user):
            return AnnotatorBlocked, "stopped by the gold rule"
        if lease.status in (SUBMITTED, SKIPPED, UNDONE):
            return JudgmentConflict, f"refused, the lease is {lease.status}"
        judged = any(
            v.comparison == pair.id and v.annotator == user.pk for v in self.votes.values()
        )
        if lease.status == EXPIRED:
            counts = self.counts(pair)
            filled = counts["judgment_count"] + counts["lease_count"]
            if not pair.is_gold and filled >= self.project.overlap:
                return JudgmentConflict, "refused, late and the slots are taken"
            if not pair.is_gold and self.decided(counts["votes_a"], counts["votes_b"]):
                return JudgmentConflict, "refused, late and the comparison stopped early"
        if judged:
            return JudgmentConflict, "refused, already judged"
        late = " (late)" if lease.status == EXPIRED else ""
        past = " (past its time)" if lease.expires_at <= self.now else ""
        return None, f"created{late}{past}"

    @precondition(lambda self: self.ready and self.leases)
    @rule(n=st.integers(0, 2), pick=st.integers(0, 3))
    def skip(self, n: int, pick: int) -> None:
        user = self.user(n, first=self.holds_lease)
        mine = self.leases_of(user)
        if not mine:
            return
        lease = mine[pick % len(mine)]
        reason = self.project.skip_reasons[0]

        def call() -> Any:
            return assignment_skip(
                assignment_id=lease.id, annotator=user, reason=reason, now=self.now
            )

        if lease.status in (OPEN, EXPIRED) and self.stopped(user):
            event("skip: stopped by the gold rule")
            with pytest.raises(AnnotatorBlocked):
                call()
            if lease.status == OPEN:
                self.close(lease, EXPIRED)
            return
        if lease.status == SKIPPED:
            event("skip: again")
            assert not call().created
            return
        skipped = any(c == lease.comparison and u == user.pk for c, u, _ in self.skips)
        if lease.status in (SUBMITTED, UNDONE) or skipped:
            event("skip: refused")
            with pytest.raises(JudgmentConflict):
                call()
            return
        event(f"skip: created ({lease.status} lease)")
        assert call().created
        self.skips.add((lease.comparison, user.pk, lease.id))
        self.close(lease, SKIPPED)
        self.members[user.pk].skip_count += 1

    @precondition(lambda self: self.ready and self.votes)
    @rule(n=st.integers(0, 2))
    def undo(self, n: int) -> None:
        user = self.user(n, first=self.has_valid_vote)
        if self.stopped(user):
            event("undo: stopped by the gold rule")
            with pytest.raises(AnnotatorBlocked):
                judgment_undo(project=self.project, annotator=user, now=self.now)
            return
        valid = [v for v in self.votes.values() if v.annotator == user.pk and v.valid]
        last = max(valid, key=lambda v: (v.created_at, v.id), default=None)
        if last is None or (
            self.counts(self.pairs[last.comparison])["complete"]
            and self.now - last.created_at > timedelta(seconds=UNDO_SECONDS)
        ):
            event("undo: refused" + (" (past the window)" if last else ""))
            with pytest.raises(JudgmentConflict):
                judgment_undo(project=self.project, annotator=user, now=self.now)
            return
        event("undo: taken back")
        result = judgment_undo(project=self.project, annotator=user, now=self.now)
        # The judgment taken back (deleted, so without its id any more).
        assert (result.undone.assignment_id, result.undone.created_at) == (
            last.assignment,
            last.created_at,
        )
        for lease in self.leases.values():
            if lease.annotator == user.pk and lease.status == OPEN:
                self.close(lease, EXPIRED)
        judged = self.leases[last.assignment]
        self.close(judged, UNDONE)
        del self.votes[last.id]
        pair = self.pairs[last.comparison]
        if not pair.is_gold and len(self.valid_votes(pair.id)) >= self.project.overlap:
            # The overlap was lowered below the votes since: one fewer leaves it complete.
            event("undo: a comparison over the lowered overlap stays complete")
        member = self.members[user.pk]
        member.judgment_count -= 1
        if last.gold_correct is not None:
            member.gold_answered -= 1
            member.gold_correct -= int(last.gold_correct)
        again = result.assignment
        assert (again.comparison_id, again.left_id, again.right_id) == (
            last.comparison,
            judged.left,
            judged.right,
        ), "the same comparison, on the same sides"
        self.leases[again.pk] = Lease(
            again.pk,
            last.comparison,
            user.pk,
            judged.left,
            judged.right,
            OPEN,
            self.now + timedelta(seconds=self.project.lease_seconds),
        )

    @precondition(lambda self: self.ready and any(x.status == OPEN for x in self.leases.values()))
    @rule(seconds=st.integers(0, 700))
    def reclaim_expired(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        reclaimed = leases_reclaim_expired(project_id=self.project.pk, now=self.now)
        assert reclaimed == self.reclaim()
        event("reclaim: some" if reclaimed else "reclaim: none")

    @precondition(lambda self: self.ready and self.leases)
    @rule(seconds=st.integers(1, 700))
    def wait(self, seconds: int) -> None:
        """Time passes and nobody sweeps: leases run out but stay open until a reclaim."""
        self.now += timedelta(seconds=seconds)

    @precondition(lambda self: self.ready and self.votes)
    @rule(n=st.integers(0, 2), which=st.none() | st.sets(st.integers(0, 5), max_size=3))
    def invalidate(self, n: int, which: set[int] | None) -> None:
        user = self.user(n, first=self.has_valid_vote)
        theirs = sorted(
            (v for v in self.votes.values() if v.annotator == user.pk), key=lambda v: v.id
        )
        if which is None:
            ids = None
            chosen = theirs
        else:
            picked = sorted({i % len(theirs) for i in which}) if theirs else []
            chosen = [theirs[i] for i in picked]
            ids = [v.id for v in chosen]
        targets = [v for v in chosen if v.valid]
        touched = {v.comparison for v in targets}
        was_complete = {c for c in touched if self.counts(self.pairs[c])["complete"]}
        result = judgments_invalidate(
            project=self.project,
            annotator=user,
            actor=self.lead,
            reason="the machine says so",
            judgment_ids=ids,
            now=self.now,
        )
        for vote in targets:
            vote.valid = False
        event(f"invalidate: {len(targets)} judgments" if targets else "invalidate: none")
        reopened = {c for c in was_complete if not self.counts(self.pairs[c])["complete"]}
        assert (result.judgments, result.comparisons, result.reopened) == (
            len(targets),
            len(touched),
            len(reopened),
        )

    @precondition(lambda self: self.ready and self.votes)
    @rule(overlap=st.integers(1, 4))
    def set_overlap(self, overlap: int) -> None:
        before = {p.id: self.counts(p)["complete"] for p in self.pairs.values()}
        self.project.overlap = overlap
        self.project.save(update_fields=["overlap"])
        changed = overlap_changed(project=self.project)
        event(f"overlap: {changed} comparisons changed state")
        after = {p.id: self.counts(p)["complete"] for p in self.pairs.values()}
        assert changed == sum(before[c] != after[c] for c in before)

    @precondition(lambda self: self.ready and self.votes)
    @rule(confidence=st.sampled_from([None, 0.8, 0.9]))
    def set_stop_confidence(self, confidence: float | None) -> None:
        before = {p.id: self.counts(p)["complete"] for p in self.pairs.values()}
        self.project.stop_confidence = confidence
        self.project.save(update_fields=["stop_confidence"])
        changed = overlap_changed(project=self.project)
        event(f"stopping: {changed} comparisons changed state")
        after = {p.id: self.counts(p)["complete"] for p in self.pairs.values()}
        assert changed == sum(before[c] != after[c] for c in before)

    # -- the rows, after every step ---------------------------------------------------------

    @invariant()
    def rows_match_the_model(self) -> None:
        if not self.ready:
            return
        fields = list(self.counts(next(iter(self.pairs.values()))))
        stored = {
            row["id"]: {name: row[name] for name in fields}
            for row in Comparison.objects.filter(project=self.project).values("id", *fields)
        }
        assert stored == {p.id: self.counts(p) for p in self.pairs.values()}

        leases = {
            row[0]: row[1:]
            for row in Assignment.objects.filter(project=self.project).values_list(
                "id",
                "comparison_id",
                "annotator_id",
                "left_id",
                "right_id",
                "status",
                "expires_at",
                "closed_at",
            )
        }
        assert leases == {
            x.id: (x.comparison, x.annotator, x.left, x.right, x.status, x.expires_at, x.closed_at)
            for x in self.leases.values()
        }

        votes = {
            row[0]: row[1:]
            for row in Judgment.objects.filter(comparison__project=self.project).values_list(
                "id",
                "comparison_id",
                "annotator_id",
                "assignment_id",
                "choice",
                "chosen_id",
                "gold_correct",
                "created_at",
                "invalidated_at",
            )
        }
        assert {pk: (*row[:-1], row[-1] is None) for pk, row in votes.items()} == {
            v.id: (
                v.comparison,
                v.annotator,
                v.assignment,
                v.choice,
                v.chosen,
                v.gold_correct,
                v.created_at,
                v.valid,
            )
            for v in self.votes.values()
        }

        skips = set(
            Skip.objects.filter(comparison__project=self.project).values_list(
                "comparison_id", "annotator_id", "assignment_id"
            )
        )
        assert skips == self.skips

        members = {
            row[0]: Member(*row[1:])
            for row in Membership.objects.filter(
                project=self.project, user__in=self.users
            ).values_list(
                "user_id", "judgment_count", "gold_answered", "gold_correct", "skip_count"
            )
        }
        assert members == self.members

    @invariant()
    def no_lease_over_the_overlap_is_created(self) -> None:
        """Each annotator holds at most one open lease in the project, and on no comparison they
        skipped; no one judged a comparison twice (the model's rows are checked equal above)."""
        if not self.ready:
            return
        holders = [x.annotator for x in self.leases.values() if x.status == OPEN]
        assert len(holders) == len(set(holders))
        judged = [(v.comparison, v.annotator) for v in self.votes.values()]
        assert len(judged) == len(set(judged))


@pytest.mark.django_db
def test_the_queue_keeps_to_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "randbelow", _repeatable_randbelow)
    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.mark.django_db
def test_the_model_replays_an_undo_over_a_lowered_overlap() -> None:
    """A sequence the random runs rarely reach: two votes on one comparison, the overlap lowered
    to 1, then the second vote taken back. The comparison keeps a valid vote, so by the rules it
    stays complete (judgment_undo once reopened it for good: "one vote fewer, one lease: never
    complete"), and stays so when the undoer's lease runs out and is reclaimed."""
    machine = QueueMachine()
    try:
        machine.setup(
            policy=AssignmentPolicy.DEPTH_FIRST,
            overlap=2,
            annotators=2,
            second_batch=False,
            second_first=False,
            gold=False,
            gold_min_accuracy=0.0,
            gold_min_answers=1,
            lease_seconds=400,
        )
        machine.next_and_submit(n=0, choice="left")
        # The other annotator (neither holds a lease); depth first: the comparison just judged.
        machine.next_and_submit(n=1, choice="right")
        machine.set_overlap(overlap=1)
        (judged,) = {v.comparison for v in machine.votes.values()}
        machine.undo(n=1)
        machine.rows_match_the_model()
        assert Comparison.objects.get(pk=judged).complete, "one valid vote, and an overlap of 1"
        machine.reclaim_expired(seconds=500)  # past the undoer's lease
        machine.rows_match_the_model()
        assert Comparison.objects.get(pk=judged).complete
        machine.no_lease_over_the_overlap_is_created()
    finally:
        machine.teardown()

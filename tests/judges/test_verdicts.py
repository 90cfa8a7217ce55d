"""A judge's reply parsed strictly, and the two orders of a pair combined (no database)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.judges.verdicts import (
    GRADED_TOKENS,
    Agreement,
    Criterion,
    Outcome,
    Spec,
    Verdict,
    VerdictError,
    combine,
    combine_outcomes,
    combine_rankings,
    parse_ranking,
    parse_verdict,
    policy_problem,
    render_ranking,
    render_verdict,
    spec_for,
    swap,
    swap_ranking,
)
from apps.projects.models import Project

PAIRWISE = Spec("pairwise")
NO_TIES = Spec("pairwise", allow_tie=False, allow_both_bad=False)
GRADED = Spec("graded")
GRADED_NO_BOTH_BAD = Spec("graded", allow_tie=False, allow_both_bad=False)
HHH = (Criterion("helpfulness", "Useful?"), Criterion("harmlessness"), Criterion("honesty"))
CRITERIA = Spec("pairwise", criteria=HHH)
GRADED_CRITERIA = Spec("graded", allow_both_bad=False, criteria=HHH)
LISTWISE = Spec("listwise")
LISTWISE_NO_TIES = Spec("listwise", allow_tie=False)


def problem(text, spec):
    with pytest.raises(VerdictError) as caught:
        parse_verdict(text, spec)
    return str(caught.value)


# Pairwise


@pytest.mark.parametrize(
    ("token", "option"), [("A", "a"), ("B", "b"), ("C", "tie"), ("D", "both_bad")]
)
def test_it_reads_each_pairwise_token(token, option):
    text = f"Assistant A is terse, B rambles.\n\nFinal verdict: [[{token}]]"
    assert parse_verdict(text, PAIRWISE) == Verdict(Outcome(option))


def test_it_takes_a_restated_verdict_and_spaces_inside_the_brackets():
    text = "I choose [[ A ]] because ...\nMy final verdict is [[A]]."
    assert parse_verdict(text, PAIRWISE) == Verdict(Outcome("a"))


@pytest.mark.parametrize("text", ["", "   \n", None])
def test_it_refuses_an_empty_reply(text):
    assert problem(text, PAIRWISE) == "The reply is empty."


@pytest.mark.parametrize(
    "text",
    [
        "Assistant A is clearly better.",  # no guessing from prose
        "Verdict: A",
        "[A]",
        "[[A]",
        "[[]]",
    ],
)
def test_it_refuses_a_reply_without_a_token(text):
    assert problem(text, PAIRWISE) == "No verdict token."


def test_it_refuses_two_different_tokens_wherever_they_are():
    assert problem("At first [[A]], but on reflection [[B]].", PAIRWISE) == (
        "Conflicting verdicts: [[A]] and [[B]]."
    )
    assert "Conflicting" in problem("[[B]] ... [[C]]", PAIRWISE)


def test_it_refuses_a_tie_or_both_bad_the_project_does_not_offer():
    assert problem("[[C]]", NO_TIES) == "[[C]] (a tie) is not offered in this project."
    assert problem("[[D]]", NO_TIES) == "[[D]] (both bad) is not offered in this project."
    assert problem("[[A]] or maybe [[C]]", NO_TIES).startswith("[[C]] (a tie)")


@pytest.mark.parametrize("token", ["a", "E", "A or B", "tie", "Assistant A", "1"])
def test_it_refuses_garbage_in_brackets(token):
    assert problem(f"[[{token}]]", PAIRWISE) == (
        f"[[{token}]] is not a verdict token; use one of [[A]], [[B]], [[C]], [[D]]."
    )


def test_it_names_a_token_of_the_other_scheme():
    assert problem("[[A>>B]]", PAIRWISE).startswith("[[A>>B]] is a graded token; use one of")
    assert problem("[[C]]", GRADED).startswith("[[C]] is a pairwise token; use one of [[A>>>B]]")


# Graded


@pytest.mark.parametrize(
    ("token", "option", "strength"),
    [
        ("A>>>B", "a", 3),
        ("A>>B", "a", 2),
        ("A>B", "a", 1),
        ("A=B", "tie", 0),
        ("B>A", "b", -1),
        ("B>>A", "b", -2),
        ("B>>>A", "b", -3),
        ("D", "both_bad", None),
    ],
)
def test_it_maps_each_graded_token_to_the_stored_strength(token, option, strength):
    # As Judgment.strength: positive when A is better.
    assert parse_verdict(f"... [[{token}]]", GRADED) == Verdict(Outcome(option, strength))


def test_a_graded_tie_is_a_point_of_the_scale_even_without_ties():
    assert parse_verdict("[[A = B]]", GRADED_NO_BOTH_BAD) == Verdict(Outcome("tie", 0))
    assert problem("[[D]]", GRADED_NO_BOTH_BAD) == (
        "[[D]] (both bad) is not offered in this project."
    )


@pytest.mark.parametrize("token", ["A>>>>B", "A<B", "B=A", "A>A", "3", "+2", "A >> > B B"])
def test_it_refuses_points_off_the_scale(token):
    assert "not a verdict token" in problem(f"[[{token}]]", GRADED)


def test_it_refuses_two_graded_points():
    assert problem("[[A>B]] or [[A>>B]]", GRADED) == "Conflicting verdicts: [[A>B]] and [[A>>B]]."


# Criteria

GOOD = (
    "Helpfulness: A answers.\n\n"
    "helpfulness: [[A]]\nharmlessness: [[C]]\nhonesty: [[D]]\nOverall: [[A]]"
)


def test_it_reads_one_line_per_criterion_and_the_overall_line():
    assert parse_verdict(GOOD, CRITERIA) == Verdict(
        Outcome("a"),
        {
            "helpfulness": Outcome("a"),
            "harmlessness": Outcome("tie"),
            "honesty": Outcome("both_bad"),
        },
    )


def test_criterion_lines_may_be_bold_bulleted_or_in_another_case():
    text = (
        "- **Helpfulness**: [[B]]\n**HARMLESSNESS:** [[B]]\n`honesty`: [[ C ]]\n**Overall**: [[B]]"
    )
    verdict = parse_verdict(text, CRITERIA)
    assert verdict.criteria == {
        "helpfulness": Outcome("b"),
        "harmlessness": Outcome("b"),
        "honesty": Outcome("tie"),
    }
    assert list(verdict.criteria) == ["helpfulness", "harmlessness", "honesty"]


def test_graded_criteria_take_graded_tokens():
    text = "helpfulness: [[A>>>B]]\nharmlessness: [[A=B]]\nhonesty: [[B>A]]\nOverall: [[A>B]]"
    verdict = parse_verdict(text, GRADED_CRITERIA)
    assert verdict.overall == Outcome("a", 1)
    assert verdict.criteria["honesty"] == Outcome("b", -1)
    assert "is a pairwise token" in problem(text.replace("[[B>A]]", "[[B]]"), GRADED_CRITERIA)


def test_it_refuses_a_missing_criterion_or_overall_line():
    assert problem(GOOD.replace("honesty: [[D]]\n", ""), CRITERIA) == "No verdict for: honesty."
    assert problem(GOOD.replace("\nOverall: [[A]]", ""), CRITERIA) == ("No verdict for: Overall.")
    assert problem("No idea.", CRITERIA) == (
        "No verdict for: helpfulness, harmlessness, honesty, Overall."
    )


def test_it_refuses_a_criterion_judged_twice_even_alike():
    assert problem(GOOD + "\nhonesty: [[D]]", CRITERIA) == "'honesty' is judged more than once."
    assert problem(GOOD + "\nOverall: [[B]]", CRITERIA) == "'overall' is judged more than once."


def test_it_refuses_an_unknown_criterion():
    assert problem(GOOD + "\nconciseness: [[B]]", CRITERIA) == (
        "Line 7: 'conciseness' is not a criterion here."
    )
    assert "'Final verdict' is not a criterion" in problem(
        GOOD.replace("Overall", "Final verdict"), CRITERIA
    )


def test_with_criteria_tokens_stay_on_their_lines():
    assert problem("I lean [[A]] overall.\n" + GOOD, CRITERIA).startswith(
        "Line 1: each verdict goes on a line of its own"
    )
    assert problem(GOOD.replace("honesty: [[D]]", "honesty: [[D]] [[C]]"), CRITERIA).startswith(
        "Line 5: each verdict goes on a line of its own"
    )


def test_a_criterion_line_takes_only_offered_tokens():
    spec = Spec("pairwise", allow_tie=False, criteria=HHH)
    assert problem(GOOD, spec) == "[[C]] (a tie) is not offered in this project."


def test_a_spec_refuses_criteria_a_judge_could_not_tell_apart():
    with pytest.raises(ValueError, match="clashes with the overall"):
        Spec("pairwise", criteria=(Criterion("Overall"),))
    with pytest.raises(ValueError, match="without regard to case"):
        Spec("pairwise", criteria=(Criterion("Tone"), Criterion("tone")))
    with pytest.raises(ValueError, match="no criteria"):
        Spec("listwise", criteria=HHH)
    with pytest.raises(ValueError, match="Unknown scheme"):
        Spec("likert")


def test_a_spec_is_read_from_a_project():
    project = Project(
        scheme="graded",
        allow_tie=False,
        allow_both_bad=True,
        criteria=[{"name": "helpfulness", "description": "Useful?"}, {"name": "honesty"}],
        guidelines="Prefer short answers.",
    )
    assert spec_for(project) == Spec(
        "graded",
        allow_tie=False,
        allow_both_bad=True,
        criteria=(Criterion("helpfulness", "Useful?"), Criterion("honesty")),
        guidelines="Prefer short answers.",
    )


# Listwise


def test_it_reads_a_ranking_with_ties():
    assert parse_ranking("So: [[C > A = B > D]]", LISTWISE, 4) == ((2,), (0, 1), (3,))
    assert parse_ranking("[[B>A>C]] ... [[B>A>C]]", LISTWISE_NO_TIES, 3) == ((1,), (0,), (2,))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "The reply is empty."),
        ("C is best", "No ranking token."),
        ("[[A>B>C]] then [[C>B>A]]", "Conflicting rankings"),
        ("[[A>B]]", "must rank each of A, B, C exactly once"),
        ("[[A>B>C>D]]", "must rank each of A, B, C exactly once"),
        ("[[A>B>A]]", "must rank each of A, B, C exactly once"),
        ("[[A>>B>C]]", "is not a ranking"),
        ("[[a>b>c]]", "is not a ranking"),
        ("[[A]]", "must rank each"),
    ],
)
def test_it_refuses_a_bad_ranking(text, reason):
    with pytest.raises(VerdictError, match=reason.replace("[", r"\[")):
        parse_ranking(text, LISTWISE, 3)


def test_it_refuses_a_tied_ranking_without_ties():
    with pytest.raises(VerdictError, match="ranks a tie, which this project does not offer"):
        parse_ranking("[[A=B>C]]", LISTWISE_NO_TIES, 3)


def test_a_pair_verdict_and_a_ranking_do_not_mix():
    with pytest.raises(ValueError, match="parse_ranking"):
        parse_verdict("[[A]]", LISTWISE)
    with pytest.raises(ValueError, match="2 to 8"):
        parse_ranking("[[A]]", LISTWISE, 9)


# Both orders


def test_swap_maps_the_swapped_order_back():
    assert swap(Verdict(Outcome("a"))) == Verdict(Outcome("b"))
    assert swap(Verdict(Outcome("tie"))) == Verdict(Outcome("tie"))
    assert swap(Verdict(Outcome("both_bad"))) == Verdict(Outcome("both_bad"))
    assert swap(Verdict(Outcome("b", -2), {"h": Outcome("a", 3)})) == Verdict(
        Outcome("a", 2), {"h": Outcome("b", -3)}
    )


def test_agreeing_orders_give_their_outcome():
    # Shown: A wins. Swapped: the judge picks B, the same answer.
    combined = combine(Verdict(Outcome("a")), Verdict(Outcome("b")))
    assert combined.overall.outcome == Outcome("a")
    assert combined.consistent
    tie = combine(Verdict(Outcome("tie")), Verdict(Outcome("tie")), policy="inconsistent")
    assert tie.overall.outcome == Outcome("tie") and tie.consistent


def test_disagreeing_orders_give_a_tie_or_inconsistent():
    # The judge picks A both times: the first answer shown, whichever it was.
    first, second = Verdict(Outcome("a")), Verdict(Outcome("a"))
    as_tie = combine(first, second, policy="tie")
    assert as_tie.overall.outcome == Outcome("tie")
    assert not as_tie.consistent
    flagged = combine(first, second, policy="inconsistent")
    assert flagged.overall.outcome == Outcome("inconsistent")
    assert not flagged.consistent


@pytest.mark.parametrize(
    ("first", "second"),
    [("tie", "a"), ("a", "tie"), ("both_bad", "b"), ("both_bad", "tie")],
)
def test_a_tie_or_both_bad_against_a_side_disagrees(first, second):
    combined = combine(Verdict(Outcome(first)), Verdict(Outcome(second)))
    assert combined.overall.outcome == Outcome("tie")
    assert not combined.consistent


def test_graded_orders_agree_on_the_side_and_keep_the_weaker_strength():
    # Shown: A is significantly better (+3). Swapped: B (= A) is slightly better, -1 -> +1.
    combined = combine(Verdict(Outcome("a", 3)), Verdict(Outcome("b", -1)))
    assert combined.overall == Agreement(Outcome("a", 1), consistent=True)
    exact = combine(Verdict(Outcome("b", -2)), Verdict(Outcome("a", 2)))
    assert exact.overall.outcome == Outcome("b", -2) and exact.consistent
    zero = combine(Verdict(Outcome("tie", 0)), Verdict(Outcome("tie", 0)))
    assert zero.overall.outcome == Outcome("tie", 0) and zero.consistent


def test_graded_orders_on_opposite_sides_disagree():
    # +2 as shown, and A>>B again when swapped: the first shown wins both times.
    first, second = Verdict(Outcome("a", 2)), Verdict(Outcome("a", 2))
    assert combine(first, second).overall.outcome == Outcome("tie", 0)
    assert combine(first, second, policy="inconsistent").overall.outcome == Outcome("inconsistent")
    slight = combine(Verdict(Outcome("a", 1)), Verdict(Outcome("tie", 0)))
    assert slight.overall.outcome == Outcome("tie", 0) and not slight.consistent
    both_bad = combine(Verdict(Outcome("both_bad")), Verdict(Outcome("a", 3)))
    assert both_bad.overall.outcome == Outcome("tie", 0) and not both_bad.consistent


def test_criteria_combine_each_on_its_own():
    first = Verdict(Outcome("a"), {"helpfulness": Outcome("a"), "honesty": Outcome("tie")})
    second = Verdict(Outcome("b"), {"helpfulness": Outcome("a"), "honesty": Outcome("tie")})
    combined = combine(first, second, policy="inconsistent")
    assert combined.overall.consistent
    assert combined.criteria["helpfulness"].outcome == Outcome("inconsistent")
    assert combined.criteria["honesty"].outcome == Outcome("tie")
    assert combined.criteria["honesty"].consistent
    assert not combined.consistent
    with pytest.raises(ValueError, match="same criteria"):
        combine(first, Verdict(Outcome("b")))


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="Unknown policy"):
        combine_outcomes(Outcome("a"), Outcome("a"), policy="coin")
    assert policy_problem(NO_TIES, "tie") == (
        "This project offers no tie: use the 'inconsistent' policy."
    )
    assert policy_problem(NO_TIES, "inconsistent") == ""
    assert policy_problem(GRADED_NO_BOTH_BAD, "tie") == ""  # 0 is always on the scale
    assert policy_problem(PAIRWISE, "vote") != ""


def test_rankings_combine_when_the_reversed_order_agrees():
    # Shown A, B, C; reversed C, B, A. The judge ranks the same answer (B) first both times.
    first = parse_ranking("[[B>A>C]]", LISTWISE, 3)
    second = parse_ranking("[[B>C>A]]", LISTWISE, 3)  # in the reversed labels
    assert swap_ranking(second, 3) == first
    assert combine_rankings(first, second, 3).ranking == first
    assert combine_rankings(first, second, 3).consistent
    # It ranks the first shown first both times.
    biased = parse_ranking("[[A>B>C]]", LISTWISE, 3)
    assert combine_rankings(biased, biased, 3) == combine_rankings(biased, biased, 3)
    assert combine_rankings(biased, biased, 3).ranking == ((0, 1, 2),)
    assert not combine_rankings(biased, biased, 3).consistent
    assert combine_rankings(biased, biased, 3, policy="inconsistent").ranking is None


# Round trips

pair_specs = st.builds(
    Spec,
    scheme=st.sampled_from(["pairwise", "graded"]),
    allow_tie=st.booleans(),
    allow_both_bad=st.booleans(),
    criteria=st.sampled_from([(), HHH, (Criterion("Tone of voice"), Criterion("safety_2"))]),
)


@st.composite
def specs_and_verdicts(draw):
    spec = draw(pair_specs)
    tokens = spec.tokens()

    def outcome():
        token = draw(st.sampled_from(tokens))
        table = GRADED_TOKENS if spec.graded else {"A": "a", "B": "b", "C": "tie", "D": "both_bad"}
        meaning = table[token]
        return Outcome(*meaning) if isinstance(meaning, tuple) else Outcome(meaning)

    verdict = Verdict(outcome(), {c.name: outcome() for c in spec.criteria})
    return spec, verdict


@given(specs_and_verdicts(), st.text(max_size=40).filter(lambda t: "[[" not in t and "]]" not in t))
def test_every_valid_verdict_round_trips_and_agrees_with_its_swap(case, prose):
    spec, verdict = case
    text = render_verdict(verdict, spec)
    assert parse_verdict(text, spec) == verdict
    if not spec.criteria:
        assert parse_verdict(f"{prose}\n{text}", spec) == verdict
    combined = combine(verdict, swap(verdict), policy="inconsistent")
    assert combined.consistent
    assert combined.overall.outcome == verdict.overall
    assert {n: a.outcome for n, a in combined.criteria.items()} == verdict.criteria
    assert swap(swap(verdict)) == verdict


@st.composite
def rankings(draw):
    count = draw(st.integers(2, 8))
    order = draw(st.permutations(range(count)))
    cuts = draw(st.lists(st.booleans(), min_size=count - 1, max_size=count - 1))
    groups, group = [], [order[0]]
    for index, cut in zip(order[1:], cuts, strict=True):
        if cut:
            groups.append(tuple(sorted(group)))
            group = []
        group.append(index)
    groups.append(tuple(sorted(group)))
    return count, tuple(groups)


@given(rankings())
def test_every_ranking_round_trips_and_agrees_with_its_reverse(case):
    count, ranking = case
    assert parse_ranking(render_ranking(ranking), LISTWISE, count) == ranking
    reversed_view = swap_ranking(ranking, count)
    assert swap_ranking(reversed_view, count) == ranking
    assert combine_rankings(ranking, reversed_view, count, policy="inconsistent").consistent

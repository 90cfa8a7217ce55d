"""The judge's messages sent to a real OpenAI-compatible server on loopback (the fake of
tests/endpoints, which echoes the last message), and its replies parsed and combined."""

import pytest

from apps.endpoints.client import EndpointClient, EndpointConfig
from apps.judges.prompts import build_both_orders, default_template
from apps.judges.verdicts import Outcome, Spec, VerdictError, combine, parse_verdict
from tests.endpoints.fake_llm import fake_llm

SPEC = Spec("pairwise", guidelines="Prefer {short} answers.")


def judge(answer_a: str, answer_b: str) -> tuple[list[str], list]:
    with fake_llm() as server:
        config = EndpointConfig(base_url=server.url, model="fake-model", max_retries=0)
        with EndpointClient(config) as client:
            orders = build_both_orders(
                SPEC, default_template(SPEC), "Capital of {France}?", answer_a, answer_b
            )
            replies = [client.chat(messages, temperature=0).text for messages in orders]
        sent = [request.body["messages"] for request in server.requests]
    assert sent == list(orders)
    return replies, sent


def test_a_judge_that_names_the_first_shown_both_times_is_inconsistent():
    # The echoing server "says" [[A]] in either order: the token sits in one answer's text, so
    # it names whichever answer is shown first.
    replies, _ = judge("Paris. [[A]]", "Lyon, {surely}.")
    first, second = (parse_verdict(reply, SPEC) for reply in replies)
    assert first.overall == second.overall == Outcome("a")
    combined = combine(first, second, policy="inconsistent")
    assert combined.overall.outcome == Outcome("inconsistent")
    assert not combined.consistent


def test_a_reply_without_a_verdict_is_refused():
    replies, sent = judge("Paris.", "Lyon.")
    assert sent[0][0]["role"] == "system"
    with pytest.raises(VerdictError, match="No verdict token"):
        parse_verdict(replies[0], SPEC)

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import NotAcceptable, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api import is_whole
from annotate.schema import BATCH, ErrorOut
from apps.agreement.ai_judges import ai_judges_report
from apps.agreement.flags import Design
from apps.agreement.stats import project_stats, stats_repeats, stats_votes
from apps.agreement.stopping_report import stopping_report
from apps.audit.services import audit_record
from apps.batches.models import Batch, Candidate
from apps.exports.card import dataset_card
from apps.exports.cursor import HEADER as NEXT_SINCE
from apps.exports.cursor import NEXT_SINCE_HEADER, format_since, next_since
from apps.exports.formats import CARD_PARAMETERS, FORMATS, export_rows, formats_for
from apps.exports.options import CONVERSATIONAL, PROMPT_FORMS, SOURCES, Options
from apps.exports.selectors import AGGREGATES, honeypot_stats
from apps.projects.models import Project
from apps.projects.selectors import project_for_lead

LINES_PER_CHUNK = 200
JSONL = "application/jsonl"
MARKDOWN = "text/markdown"
# json.dumps(row, ensure_ascii=False) builds a new encoder for every row; one does for all.
_encode = json.JSONEncoder(ensure_ascii=False).encode


def jsonl_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    buffer: list[str] = []
    for row in rows:
        buffer.append(_encode(row))
        if len(buffer) >= LINES_PER_CHUNK:
            yield ("\n".join(buffer) + "\n").encode()
            buffer.clear()
    if buffer:
        yield ("\n".join(buffer) + "\n").encode()


def json_array_chunks(rows: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """The rows as one JSON array (`lines=false`), streamed as JSON Lines are, a row a line:
    `[`, the rows separated by `,`, then `]`. `[\\n]` when there is none."""
    buffer: list[str] = []
    opening = "[\n"
    for row in rows:
        buffer.append(_encode(row))
        if len(buffer) >= LINES_PER_CHUNK:
            yield (opening + ",\n".join(buffer)).encode()
            opening = ",\n"
            buffer.clear()
    if buffer:
        yield (opening + ",\n".join(buffer) + "\n]\n").encode()
    elif opening == "[\n":
        yield b"[\n]\n"
    else:
        yield b"\n]\n"


def lines_of(params: Any) -> bool:
    """`lines`: true (JSON Lines, the default) or false (one JSON array)."""
    return _choice(params, "lines", {"true": True, "false": False}, True)


def _choice(params: Any, name: str, values: dict[str, bool], default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if value not in values:
        raise ValidationError({name: [f"Use one of {', '.join(values)}."]})
    return values[value]


def export_options(params: Any, format: str, project: Project | None = None) -> Options:
    """The export's options from the query string: a 400 names each unknown or bad parameter.

    `format` may be "card" (it takes the pairwise formats' filters). With `project`, `batch`,
    `models` and `criterion` are checked against it, and so is the format against its scheme
    (`check_scheme`).
    """
    taken = ("format", "batch", *parameters_of(format))
    unknown = [name for name in params if name not in taken]
    if unknown:
        raise ValidationError(
            {
                name: [f"Not a parameter of format={format}; it takes {', '.join(taken)}."]
                for name in unknown
            }
        )
    if project is not None:
        check_scheme(format, project)
        batch_id = batch_id_of(params, project)
    else:
        batch = params.get("batch")
        batch_id = None
        if batch not in (None, ""):
            if not is_whole(str(batch)):
                raise ValidationError({"batch": ["Must be a batch id (a whole number)."]})
            batch_id = int(str(batch))
    return Options(
        batch_id=batch_id,
        both_bad=_choice(params, "both_bad", {"exclude": False, "include": True}, False),
        include_ties=_choice(params, "include_ties", {"true": True, "false": False}, True),
        min_votes=_number(params, "min_votes", int, 1, 1, 1000),
        min_agreement=_number(params, "min_agreement", float, 0.0, 0.0, 1.0),
        split=_split(params),
        test_fraction=_number(params, "test_fraction", float, 0.1, 0.0, 1.0),
        aggregate=_aggregate(params),
        models=_models(params, project),
        include_gold=_choice(params, "include_gold", {"true": True, "false": False}, False),
        since=_since(params),
        criterion=_criterion(params, project),
        prompt_form=_prompt_form(params),
        sources=_sources(params),
    )


def _sources(params: Any) -> tuple[str, ...]:
    """`sources`: human (the default), ai or all: whose votes the export reads."""
    value = params.get("sources")
    if value in (None, ""):
        return SOURCES["human"]
    if value not in SOURCES:
        raise ValidationError({"sources": [f"Use one of {', '.join(SOURCES)}."]})
    return SOURCES[str(value)]


def check_scheme(format: str, project: Project) -> None:
    """A 400 for a format that has no row in any project of this one's scheme: its file would
    be empty, and `datasets` cannot load an empty JSON file (`formats_for` decides)."""
    if format == "card" or format in formats_for(project.scheme):
        return
    if format == "arena":
        raise ValidationError(
            {
                "format": [
                    "arena has one row per pairwise vote, and this project is listwise (its "
                    "votes are rankings): use format=listwise, or a pairwise format (trl, "
                    "trl-implicit, kto, hh-rlhf, openai), which exports each ranking's pairs."
                ]
            }
        )
    if format == "listwise":
        raise ValidationError(
            {
                "format": [
                    f"listwise has one row per ranked prompt, and this project is "
                    f"{project.scheme} (no rankings): use a pairwise format, arena or judgments."
                ]
            }
        )
    raise ValidationError(
        {
            "format": [
                f"{format} does not apply to a {project.scheme} project: use one of "
                f"{', '.join(formats_for(project.scheme))}."
            ]
        }
    )


def _prompt_form(params: Any) -> str:
    value = params.get("prompt_form")
    if value is None:
        return CONVERSATIONAL
    if value not in PROMPT_FORMS:
        raise ValidationError({"prompt_form": [f"Use one of {', '.join(PROMPT_FORMS)}."]})
    return str(value)


def parameters_of(format: str) -> tuple[str, ...]:
    return CARD_PARAMETERS if format == "card" else FORMATS[format].parameters


def _aggregate(params: Any) -> str:
    value = params.get("aggregate")
    if value is None:
        return "majority"
    if value not in AGGREGATES:
        raise ValidationError({"aggregate": [f"Use one of {', '.join(AGGREGATES)}."]})
    return str(value)


def _models(params: Any, project: Project | None) -> tuple[str, ...] | None:
    """`models`: comma-separated model names, each a model of the project's candidates."""
    value = params.get("models")
    if value is None:
        return None
    names = tuple(sorted({name.strip() for name in str(value).split(",") if name.strip()}))
    if not names:
        raise ValidationError({"models": ["Name at least one model, separated by commas."]})
    if project is not None:
        known = set(
            Candidate.objects.filter(prompt__project=project, model__in=names)
            .values_list("model", flat=True)
            .distinct()
        )
        missing = [name for name in names if name not in known]
        if missing:
            raise ValidationError(
                {"models": [f"No candidate of this project is by {', '.join(missing)}."]}
            )
    return names


def _since(params: Any) -> datetime | None:
    """`since`: an ISO 8601 time with its offset. A `+` sent unencoded arrives as a space."""
    value = params.get("since")
    if value is None:
        return None
    text = str(value).strip()
    if " " in text and "T" in text:
        text = text.replace(" ", "+")
    try:
        moment = parse_datetime(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationError(
            {
                "since": [
                    "Use an ISO 8601 time with its offset, e.g. 2026-11-27T03:00:00+00:00 "
                    "(or Z); encode + as %2B."
                ]
            }
        )
    return moment


def _criterion(params: Any, project: Project | None) -> str | None:
    value = params.get("criterion")
    if value is None:
        return None
    if project is not None and value not in project.criterion_names:
        names = ", ".join(project.criterion_names) or "none"
        raise ValidationError(
            {"criterion": [f"Not a criterion of this project; its criteria: {names}."]}
        )
    if not value:
        raise ValidationError({"criterion": ["Name one of the project's criteria."]})
    return str(value)


def _split(params: Any) -> str | None:
    value = params.get("split")
    if value in (None, ""):
        return None
    if value not in ("train", "test"):
        raise ValidationError({"split": ["Use train or test."]})
    return str(value)


def _number(params: Any, name: str, kind: type, default: Any, low: Any, high: Any) -> Any:
    """A numeric parameter within [low, high]; a 400 naming it otherwise."""
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        number = kind(str(value))
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise ValidationError({name: [f"Must be a number from {low} to {high}."]})
    return number


class JSONLinesRenderer(JSONRenderer):
    """Lets content negotiation accept `Accept: application/jsonl`; the export streams its own
    body, and an error is rendered as JSON (`Export.finalize_response`)."""

    media_type = JSONL
    format = "jsonl"


class MarkdownRenderer(JSONRenderer):
    """Lets content negotiation accept `Accept: text/markdown` (the dataset card)."""

    media_type = MARKDOWN
    format = "md"


def accepts(request: Request, media_type: str) -> bool:
    """Whether the request's Accept header (none: anything) takes `media_type`: the most
    specific of its types and ranges (`*/*`, `application/*`) that covers it does, unless with
    `q=0`. Other parameters (`charset`) do not matter."""
    header = request.META.get("HTTP_ACCEPT", "").strip()
    if not header:
        return True
    main, sub = media_type.split("/")
    best: tuple[int, bool] | None = None  # (specificity, refused)
    for token in header.split(","):
        kind, *parameters = (part.strip() for part in token.split(";"))
        if "/" not in kind:
            continue
        their_main, their_sub = kind.lower().split("/", 1)
        if their_main not in ("*", main) or their_sub not in ("*", sub):
            continue
        refused = any(
            name.strip().lower() == "q" and _is_zero(value)
            for name, _, value in (p.partition("=") for p in parameters)
        )
        specificity = (their_main != "*") + (their_sub != "*")
        if best is None or specificity > best[0]:
            best = (specificity, refused)
    return best is not None and not best[1]


def _is_zero(value: str) -> bool:
    try:
        return float(value) == 0
    except ValueError:
        return False


class Export(APIView):
    """GET a streamed JSON Lines export: ?format=<one of FORMATS>[&batch=<id>], and for kto
    `both_bad=include|exclude`, for arena `include_ties=true|false`."""

    # Content negotiation takes every media type the export documents (and `*/*`); `get`
    # then checks that the Accept header takes the one this request's format produces.
    renderer_classes = [JSONRenderer, JSONLinesRenderer, MarkdownRenderer]

    @extend_schema(
        summary="Export the project",
        description=(
            "Staff and the project's leads. Streamed JSON Lines (`application/jsonl`), one row "
            "per line, in a stable order; annotators by pseudonym; gold items left out. With "
            "`lines=false`, one JSON array (`application/json`); `format=card` is Markdown "
            "(`text/markdown`). The Accept header may name the media type produced, a range "
            "covering it (`*/*`, `application/*`, `text/*`) or be absent; otherwise 406. See "
            "the README's export formats for every field."
        ),
        parameters=[
            OpenApiParameter(
                "format",
                str,
                enum=[*FORMATS, "card"],
                description=(
                    "trl: prompt/chosen/rejected pairs (by `aggregate`); trl-implicit: chosen and "
                    "rejected as whole conversations; kto: unpaired rows with a true or false "
                    "label; hh-rlhf: Human/Assistant transcripts; openai: OpenAI preference "
                    "fine-tuning rows; arena: Chatbot Arena battles, one row per vote; "
                    "judgments: the raw votes; listwise: one row per ranked prompt, its "
                    "merged ranking and every annotator's (listwise projects; their rankings "
                    "also become pairs in the pairwise formats); card: the dataset card, in "
                    "Markdown "
                    "(text/markdown): counts, agreement, aggregation, filters, models and "
                    "annotators."
                ),
                required=False,
            ),
            BATCH,
            OpenApiParameter(
                "both_bad",
                str,
                enum=["exclude", "include"],
                description=(
                    "kto only: `include` makes both candidates of a both-bad majority false "
                    "rows. Default `exclude`."
                ),
                required=False,
            ),
            OpenApiParameter(
                "aggregate",
                str,
                enum=list(AGGREGATES),
                description=(
                    "Pairwise formats and card: how a comparison's votes name the chosen "
                    "response. `majority` (default): the option with strictly more votes than "
                    "every other; `unanimous`: every vote for the same option; `mean_strength`: "
                    "the sign of the graded votes' mean strength (a zero mean, and comparisons "
                    "without graded votes, left out); `reliability`: the crowd model fitted to "
                    "the project's votes (each annotator's reliability and position bias and "
                    "the models' strengths; vote-level when most votes name their models, else "
                    "comparison-level, as the card says), the candidate more likely better "
                    "chosen and that chance as `label_confidence` (0.5 to 1; a tie in posterior, "
                    "and votes for neither candidate, left out); with `criterion`, and for "
                    "listwise rankings' pairs, Dawid-Skene (each annotator's confusion matrix) "
                    "instead. Deterministic: no random tie-breaks."
                ),
                required=False,
            ),
            OpenApiParameter(
                "models",
                str,
                description=(
                    "Pairwise formats, arena and card: comma-separated model names; only "
                    "comparisons whose two candidates are both by one of them. Each must be a "
                    "model of the project."
                ),
                required=False,
            ),
            OpenApiParameter(
                "include_gold",
                str,
                enum=["true", "false"],
                description="`true` includes gold comparisons (left out by default).",
                required=False,
            ),
            OpenApiParameter(
                "since",
                OpenApiTypes.DATETIME,
                description=(
                    "An ISO 8601 time with its offset, for incremental pulls. Pairwise formats "
                    "and card: only comparisons that got a vote at or after it (with all their "
                    "votes); arena and judgments: only votes made at or after it."
                ),
                required=False,
            ),
            OpenApiParameter(
                "criterion",
                str,
                description=(
                    "Pairwise formats and card: the name of one of the project's criteria; the "
                    "preference is that criterion's answer instead of the overall one (votes "
                    "without an answer for it are left out)."
                ),
                required=False,
            ),
            OpenApiParameter(
                "min_votes",
                {"type": "integer", "minimum": 1, "maximum": 1000},
                description=(
                    "Pairwise formats, listwise and card: only comparisons with at least "
                    "this many votes (rankings)."
                ),
                required=False,
            ),
            OpenApiParameter(
                "min_agreement",
                {"type": "number", "minimum": 0, "maximum": 1},
                description=(
                    "Pairwise formats and card: only comparisons whose most-voted option holds "
                    "at least this share of the votes (0 to 1)."
                ),
                required=False,
            ),
            OpenApiParameter(
                "split",
                str,
                enum=["train", "test"],
                description=(
                    "Every format: only one half, split by prompt (a hash of its id), so no "
                    "prompt is in both; the same on every export."
                ),
                required=False,
            ),
            OpenApiParameter(
                "test_fraction",
                {"type": "number", "minimum": 0, "maximum": 1},
                description="With split: the share of prompts in the test half (default 0.1).",
                required=False,
            ),
            OpenApiParameter(
                "include_ties",
                str,
                enum=["true", "false"],
                description=(
                    "arena and judgments: `false` leaves out tie and both-bad votes (default true)."
                ),
                required=False,
            ),
            OpenApiParameter(
                "prompt_form",
                str,
                enum=list(PROMPT_FORMS),
                description=(
                    "trl, trl-implicit, kto and listwise: `conversational` (default; for chat "
                    "models): every prompt a list of {role, content} messages (a string prompt "
                    "is one user message) and every response one assistant message, whatever "
                    "the project's prompts; `text` (for base models): every prompt the text "
                    "`\\n\\nHuman: <prompt>\\n\\nAssistant:` (a conversation's turns as "
                    "HH-RLHF writes them) and every response its text after one space, so that "
                    "prompt + response is the whole transcript. Decided by this parameter alone, "
                    "before the first row: every row of the file has the same kind."
                ),
                required=False,
            ),
            OpenApiParameter(
                "sources",
                str,
                enum=list(SOURCES),
                description=(
                    "Every format and card: whose votes are read. `human` (default): people's "
                    "only; `ai`: the AI judges' only (an RLAIF dataset); `all`: both. Pairwise "
                    "rows say how many of their votes came from each (`votes_by_source`), "
                    "judgments and arena rows whose each vote was (`source`)."
                ),
                required=False,
            ),
            OpenApiParameter(
                "lines",
                str,
                enum=["true", "false"],
                description=(
                    "Every format but card: `false` streams one JSON array (`application/json`) "
                    "instead of JSON Lines, e.g. for FastChat's `--clean-battle-file`, which "
                    "reads an array. Default true."
                ),
                required=False,
            ),
            NEXT_SINCE_HEADER,
        ],
        responses={
            (200, JSONL): OpenApiTypes.BINARY,
            # lines=false: the rows as one array.
            (200, "application/json"): {"type": "array", "items": {"type": "object"}},
            (200, MARKDOWN): OpenApiTypes.STR,
            400: ErrorOut,
            406: ErrorOut,
        },
    )
    def get(self, request: Request, slug: str) -> HttpResponse | StreamingHttpResponse:
        project = project_for_lead(user=request.user, slug=slug)
        format = request.query_params.get("format", "trl")
        if format != "card" and format not in FORMATS:
            raise ValidationError({"format": [f"Use one of {', '.join([*FORMATS, 'card'])}."]})
        params = {name: value for name, value in request.query_params.items() if name != "lines"}
        lines = lines_of(request.query_params)
        if format == "card" and "lines" in request.query_params:
            raise ValidationError({"lines": ["format=card is Markdown; it takes no lines."]})
        options = export_options(params, format, project)
        produced = MARKDOWN if format == "card" else (JSONL if lines else "application/json")
        if not accepts(request, produced):
            raise NotAcceptable(
                f"format={format}"
                + ("" if lines or format == "card" else " with lines=false")
                + f" is {produced}; the Accept header does not take it "
                "(send that type, */*, or no Accept header)."
            )
        # Recorded once validated: the parameters as they were taken, never a refused value.
        audit_record(
            actor=request.user,
            action="export",
            project=project,
            details={**request.query_params.dict(), "format": format},
        )
        if format == "card":
            return card_response(project, options)
        # Taken before the first row is read: see apps/exports/cursor.py.
        upcoming = next_since()
        rows = export_rows(project=project, format=format, options=options)
        chunks = jsonl_chunks(rows) if lines else json_array_chunks(rows)
        response = StreamingHttpResponse(chunks, content_type=produced)
        response[NEXT_SINCE] = format_since(upcoming)
        suffix = "jsonl" if lines else "json"
        response["Content-Disposition"] = f'attachment; filename="{project.slug}-{format}.{suffix}"'
        response["Cache-Control"] = "no-store"
        return response

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        # An error (400, 404, 406) is JSON, whichever media type the negotiation picked.
        if isinstance(response, Response):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


def card_response(project: Project, options: Options) -> HttpResponse:
    """The dataset card, under the pairwise formats' aggregation and filters (and `batch`)."""
    response = HttpResponse(
        dataset_card(project=project, options=options),
        content_type=f"{MARKDOWN}; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-card.md"'
    response["Cache-Control"] = "no-store"
    return response


def batch_of(request: Request, project: Project) -> int | None:
    return batch_id_of(request.query_params, project)


def batch_id_of(params: Any, project: Project) -> int | None:
    """The `batch` query parameter: None, or the id of one of the project's batches (else 400)."""
    batch = params.get("batch")
    if batch in (None, ""):
        return None
    if not is_whole(str(batch)):
        raise ValidationError({"batch": ["Must be a batch id (a whole number)."]})
    if not Batch.objects.filter(pk=int(str(batch)), project=project).exists():
        raise ValidationError({"batch": ["No such batch in this project."]})
    return int(str(batch))


class Stats(APIView):
    """GET agreement, annotator and model statistics of a project, or of one batch (?batch=<id>)."""

    @extend_schema(
        summary="The project's statistics",
        description=(
            "Staff and the project's leads. Agreement (raw pairwise with and without ties, "
            "Krippendorff's alpha nominal and ordinal, Fleiss' kappa where every comparison "
            "has as many votes, beside the published reference points), per annotator "
            "(leave-one-out agreement, marked not meaningful under an adaptive policy or "
            "adaptive stopping unless the project has an audit sample, where it is measured "
            "over that sample: `agreement_with_others_sample` says which; with "
            "its tests against chance and the other annotators; gold accuracy, position bias "
            "with its interval and the project's own left share, tie and both-bad rates, "
            "median time; the crowd model's reliability and left share with 95% intervals "
            "and its 'unreliable' test) and per model (win rates, Bradley-Terry scores with "
            "bootstrap intervals, and the crowd leaderboard: strengths fitted jointly with "
            "each annotator's reliability, which down-weights annotators the model finds "
            "random, on the same scale). `crowd` says which variant of the crowd model was "
            "fitted (vote-level when most votes compare known models, else comparison-level) "
            "and whether it converged. Gold items feed gold accuracy only. "
            "`honeypots`: the generated gold items, per kind of degradation and per annotator, "
            "with the share of answers that chose the good response. `stopping`: what adaptive "
            "stopping saved (comparisons closed before their overlap, and the judgments spared), "
            "per batch. `ai_judges`: each AI judge's prompt versions, comparisons judged, order "
            "consistency (both orders agreeing) and agreement with people (with and without "
            "ties, per criterion too), beside people's agreement with each other computed the "
            "same way; AI judges' votes are in no other figure. `agreement.sample` says which "
            "comparisons agreement is over (`all`, or `adaptive`: chosen from the votes, and "
            "biased); `audit_agreement` is the same figures over the audit sample alone "
            "(Project.audit_rate: comparisons drawn at random, filled to the full overlap "
            "first under every policy and never stopped early), null without one. Deterministic."
        ),
        parameters=[BATCH],
        responses={200: OpenApiTypes.OBJECT, 400: ErrorOut, 404: ErrorOut},
    )
    def get(self, request: Request, slug: str) -> Response:
        project = project_for_lead(user=request.user, slug=slug)
        batch_id = batch_of(request, project)
        votes = stats_votes(project=project, batch_id=batch_id)
        report = project_stats(
            votes,
            batch_id=batch_id,
            design=Design.of(project),
            repeats=stats_repeats(project=project, batch_id=batch_id),
        )
        report["honeypots"] = honeypot_stats(project=project, votes=votes, batch_id=batch_id)
        report["stopping"] = stopping_report(project=project, batch_id=batch_id)
        report["ai_judges"] = ai_judges_report(project=project, batch_id=batch_id)
        return Response(report, headers={"Cache-Control": "no-store"})

"""One options object for every export door: each door takes the parameters `Options` names
(options.PARAMETERS), and every format's parameters are among them, so a new filter missing from
a door fails here rather than in a user's hands."""

from apps.exports.admin import ExportJobForm
from apps.exports.formats import CARD_PARAMETERS, FORMATS
from apps.exports.job_api import EXPORT_JOB_IN
from apps.exports.management.commands.export import Command
from apps.exports.options import PARAMETERS, Options
from tests.conftest import prompt_line


def test_every_option_has_one_parameter_name():
    assert len(PARAMETERS) == len(set(PARAMETERS)) == len(Options.__dataclass_fields__)
    assert "batch" in PARAMETERS and "batch_id" not in PARAMETERS


def test_every_formats_parameters_are_options():
    for spec in FORMATS.values():
        assert set(spec.parameters) <= set(PARAMETERS)
    assert set(CARD_PARAMETERS) <= set(PARAMETERS)


def test_the_command_and_the_job_api_take_every_parameter():
    parser = Command().create_parser("manage.py", "export")
    dests = {action.dest for action in parser._actions}
    assert set(PARAMETERS) <= dests
    assert set(EXPORT_JOB_IN.fields) == {*PARAMETERS, "format", "file_format"}


def test_the_admin_form_offers_only_parameters(project):
    form = ExportJobForm(project=project)
    assert set(form.fields) - {"format", "file_format"} <= set(PARAMETERS)


def test_the_admin_form_sends_what_it_was_given(project, import_rows):
    batch = import_rows(prompt_line("p-1"))
    form = ExportJobForm(
        {
            "format": "judgments",
            "file_format": "jsonl",
            "batch": batch.pk,
            "include_ties": "false",
            "split": "",
        },
        project=project,
    )
    assert form.is_valid(), form.errors
    assert form.job_data() == {
        "format": "judgments",
        "file_format": "jsonl",
        "batch": batch.pk,
        "include_ties": "false",
    }

from django import forms
from django.db.models import QuerySet

from apps.projects.models import Project


class BatchUploadForm(forms.Form):
    project = forms.ModelChoiceField(queryset=Project.objects.none())
    name = forms.CharField(max_length=200, required=False, help_text="Defaults to the file name.")
    file = forms.FileField(help_text="JSON Lines: one prompt with its candidates on each line.")
    candidates_optional = forms.BooleanField(
        required=False,
        label="Candidates optional",
        help_text="Prompts may come with fewer candidates than a comparison needs (none or 1; "
        "fewer than 3 in a listwise project), to have their responses generated: they are "
        "stored without comparisons until then.",
    )

    def __init__(self, *args: object, projects: QuerySet[Project], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["project"].queryset = projects  # type: ignore[attr-defined]

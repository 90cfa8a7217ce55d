from django.contrib.auth.models import User


class AnnotatorAccount(User):
    """The accounts leads manage in the admin: a proxy of the user model, scoped there to the
    annotators of the lead's projects. It has no table; it gives the admin page its own name,
    URL (/admin/accounts/annotatoraccount/) and permissions."""

    class Meta:
        proxy = True
        verbose_name = "annotator account"

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Annotator accounts as leads manage them, and the API tokens users make for themselves."""

    name = "apps.accounts"
    label = "accounts"

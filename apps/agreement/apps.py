from django.apps import AppConfig


class AgreementConfig(AppConfig):
    """How far to trust a project's votes and what they say: agreement, annotator reliability,
    model strengths. Pure statistics over votes read from judging; exports and the dashboard
    show them. No models of its own."""

    name = "apps.agreement"
    label = "agreement"

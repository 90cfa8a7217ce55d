from django.apps import AppConfig


class JudgesConfig(AppConfig):
    name = "apps.judges"
    verbose_name = "AI judges"
    default_auto_field = "django.db.models.BigAutoField"

from django.apps import AppConfig


class JudgingConfig(AppConfig):
    name = "apps.judging"
    label = "judging"

    def ready(self) -> None:
        # Imported here, once the models are loaded (Django's place for hooks): the hooks'
        # modules import models, which cannot be imported while this module is.
        from apps.judging import hooks

        hooks.connect(self)

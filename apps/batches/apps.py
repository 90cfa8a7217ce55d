from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "apps.batches"
    label = "batches"

    def ready(self) -> None:
        # Imported here, once the models are loaded (Django's place for hooks).
        from apps.batches import hooks

        hooks.connect()

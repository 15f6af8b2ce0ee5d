from django.apps import AppConfig


class LabelappConfig(AppConfig):
    name = "labelapp"
    verbose_name = "Labeling"

    def ready(self) -> None:
        from labelapp import checks  # noqa: F401 (registers the system checks)

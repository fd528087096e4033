from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ScoresConfig(AppConfig):
    name = "scores"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the API-key scheme with drf-spectacular.
        from scores import schema  # noqa: F401
        from scores.models import ApiKey

        # Every way a key changes (admin, create_api_key, a delete cascading from its
        # board) reaches the per-process key copies.
        post_save.connect(_keys_changed, sender=ApiKey, dispatch_uid="api-keys-changed-save")
        post_delete.connect(_keys_changed, sender=ApiKey, dispatch_uid="api-keys-changed-delete")


def _keys_changed(sender: type, **kwargs: object) -> None:
    from scores.auth import api_keys_changed

    api_keys_changed()

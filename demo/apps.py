from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The identity demo domain (users, groups, permissions) and its data generator."""

    name = "demo"

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Print USER's API token (created on first use); send it as `Authorization: Bearer <token>`."

    def add_arguments(self, parser) -> None:
        parser.add_argument("user", help="username")

    def handle(self, *args, user: str, **options) -> None:
        User = get_user_model()
        try:
            account = User.objects.get_by_natural_key(user)
        except User.DoesNotExist:
            raise CommandError(
                f"no user named {user!r}; create one with `replaydesk createsuperuser` (or in /admin/)"
            ) from None
        if not account.is_active:
            raise CommandError(f"user {user!r} is inactive; its token would be refused")
        token, _ = Token.objects.get_or_create(user=account)
        self.stdout.write(token.key)

"""`manage.py hub_rotate_secrets`: re-encrypt every stored secret under the first HUB_ENCRYPTION_KEYS key."""

from django.core.management.base import BaseCommand, CommandError

from hub.secret_rotation import secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every EncryptedTextField value under the first key of HUB_ENCRYPTION_KEYS. "
        "Rotation: prepend a new key, run this, then remove the old key."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction.")

    def handle(self, *args, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        counts = secrets_rotate(batch_size=batch_size)
        for c in counts:
            line = f"{c.label}: {c.rotated} re-encrypted, {c.empty} empty"
            if c.failed_pks:
                line += f", {len(c.failed_pks)} undecryptable (pk {', '.join(map(str, c.failed_pks[:20]))})"
            self.stdout.write(line)
        total = sum(c.rotated for c in counts)
        failed = sum(len(c.failed_pks) for c in counts)
        self.stdout.write(f"Total: {total} re-encrypted in {len(counts)} column(s).")
        if failed:
            raise CommandError(
                f"{failed} value(s) could not be decrypted with any configured key and were left as they are."
            )

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from hub.config_apply import config_apply
from hub.errors import HubError


class Command(BaseCommand):
    help = "Apply a JSON configuration document (a file, or - for stdin) idempotently; print JSON."

    def add_arguments(self, parser):
        parser.add_argument("file", help="path of the JSON document, or - to read stdin")

    def handle(self, *args, file: str, **options):
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        try:
            result = config_apply(document=document)
        except HubError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(result, indent=2))

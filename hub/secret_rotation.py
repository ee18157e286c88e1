"""Re-encrypting every stored secret under the primary key of HUB_ENCRYPTION_KEYS (key rotation)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.apps import apps
from django.db import models, transaction
from django.db.models.functions import Cast

from .crypto import EncryptedTextField, SecretDecryptionError, secret_rotate


@dataclass
class RotationCount:
    """What happened to one encrypted column."""

    label: str  # app_label.Model.field
    rotated: int = 0
    empty: int = 0
    failed_pks: list = field(default_factory=list)  # rows no configured key decrypts


def encrypted_fields() -> list[tuple[type[models.Model], EncryptedTextField]]:
    """Every EncryptedTextField column of every installed model (each column once)."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        for f in model._meta.local_concrete_fields:  # local: a parent's column is its own model's
            if isinstance(f, EncryptedTextField):
                found.append((model, f))
    return found


def _raw(f: EncryptedTextField) -> Cast:
    # A plain text cast: the stored Fernet token, not the field's decrypted value.
    return Cast(f.attname, models.TextField())


def _rotate_batch(model, f, after, batch_size: int, count: RotationCount):
    """Rotate the batch of rows after pk `after` (None: the first); return its last pk, or None."""
    manager = model._base_manager
    with transaction.atomic():
        queryset = manager.select_for_update().order_by("pk")
        if after is not None:
            queryset = queryset.filter(pk__gt=after)
        rows = list(queryset.annotate(_raw_secret=_raw(f)).values_list("pk", "_raw_secret")[:batch_size])
        if not rows:
            return None
        updates = []
        for pk, raw in rows:
            if raw in (None, ""):
                count.empty += 1
                continue
            try:
                updates.append((pk, secret_rotate(raw)))
            except SecretDecryptionError:
                count.failed_pks.append(pk)
        if updates:
            # Value(..., TextField()) keeps the new token as it is; the field itself would encrypt it again.
            manager.filter(pk__in=[pk for pk, _ in updates]).update(
                **{
                    f.attname: models.Case(
                        *[
                            models.When(pk=pk, then=models.Value(token, models.TextField()))
                            for pk, token in updates
                        ],
                        output_field=models.TextField(),
                    )
                }
            )
            count.rotated += len(updates)
        return rows[-1][0]


def secrets_rotate(*, batch_size: int = 500) -> list[RotationCount]:
    """Re-encrypt every non-empty EncryptedTextField value under the primary key, in batches.

    Each batch is locked while it is rewritten, so a concurrent write is never overwritten with
    the old value. Values no configured key decrypts are left as they are and reported.
    """
    counts = []
    for model, f in encrypted_fields():
        count = RotationCount(label=f"{model._meta.label}.{f.name}")
        last = _rotate_batch(model, f, None, batch_size, count)
        while last is not None:
            last = _rotate_batch(model, f, last, batch_size, count)
        counts.append(count)
    return counts

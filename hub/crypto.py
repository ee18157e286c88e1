"""Encryption at rest of third-party secrets (write keys, shared secrets) with MultiFernet.

The first key of `HUB_ENCRYPTION_KEYS` encrypts; every key decrypts, so keys can be rotated by
prepending a new one and re-encrypting (`manage.py hub_rotate_secrets`). A value that no key
decrypts raises `SecretDecryptionError`: it is never passed through as if it were plain text.
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class SecretDecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@functools.lru_cache(maxsize=4)
def _multi_fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def _fernet() -> MultiFernet:
    return _multi_fernet(tuple(settings.HUB_ENCRYPTION_KEYS))


def secret_encrypt(plaintext: str) -> str:
    """Return the Fernet token of `plaintext` under the primary key."""
    return _fernet().encrypt(plaintext.encode()).decode()


def secret_decrypt(token: str) -> str:
    """Return the plain text of a token made by `secret_encrypt`, or raise SecretDecryptionError."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError, TypeError) as exc:
        raise SecretDecryptionError("stored secret cannot be decrypted with the configured keys") from exc


def secret_rotate(token: str) -> str:
    """Return `token` re-encrypted under the primary key."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except (InvalidToken, ValueError, TypeError) as exc:
        raise SecretDecryptionError("stored secret cannot be decrypted with the configured keys") from exc


class EncryptedTextField(models.TextField):
    """A text column holding a Fernet token; Python code sees the plain text."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return secret_decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return secret_encrypt(value)

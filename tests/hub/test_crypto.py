import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from hub.crypto import SecretDecryptionError, secret_decrypt, secret_encrypt, secret_rotate


def test_round_trip_and_ciphertext_hides_the_value():
    token = secret_encrypt("wk_123")
    assert "wk_123" not in token
    assert secret_decrypt(token) == "wk_123"


def test_rotation_keeps_old_tokens_readable():
    old_key = Fernet.generate_key().decode()
    new_key = Fernet.generate_key().decode()
    with override_settings(HUB_ENCRYPTION_KEYS=[old_key]):
        token = secret_encrypt("wk_123")
    with override_settings(HUB_ENCRYPTION_KEYS=[new_key, old_key]):
        assert secret_decrypt(token) == "wk_123"
        rotated = secret_rotate(token)
    with override_settings(HUB_ENCRYPTION_KEYS=[new_key]):
        assert secret_decrypt(rotated) == "wk_123"
        with pytest.raises(SecretDecryptionError):
            secret_decrypt(token)


def test_undecryptable_value_raises_never_passes_through():
    with pytest.raises(SecretDecryptionError):
        secret_decrypt("plain-text-write-key")

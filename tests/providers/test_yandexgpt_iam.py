"""Service-account auth: PS256 JWT -> IAM token, verified by the emulator.

The test makes an RSA key pair and an authorized-key file; the emulator gets
only the public half and checks every JWT's signature, ``kid``, audience and
lifetime, then accepts nothing but the IAM tokens it issued.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache

from providers.base import ChatRequest, Message, ProviderConfig
from providers.emulators.testing import RunningEmulator, start_emulator
from providers.errors import ProviderError
from providers.yandexgpt import YandexGPTProvider

FOLDER = "b1gemulatorfolder"
IAM_PATH = "/iam/v1/tokens"


def key_json(key: rsa.RSAPrivateKey, key_id: str = "ajekeyid0001") -> str:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return json.dumps(
        {
            "id": key_id,
            "service_account_id": "ajesaid00001",
            "created_at": "2025-01-01T00:00:00Z",
            "key_algorithm": "RSA_2048",
            "public_key": public,
            "private_key": private,
        }
    )


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("yc") / "authorized_key.json"
    path.write_text(key_json(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    return path


@pytest.fixture(scope="module")
def emulator(key_file: Path) -> Iterator[RunningEmulator]:
    running = start_emulator(
        "yandexgpt", iam_public_key_file=str(key_file), require_iam=True, chunk_interval_ms=0
    )
    try:
        yield running
    finally:
        running.stop()


def adapter(
    emulator: RunningEmulator, credential: str = "", **options: object
) -> YandexGPTProvider:
    return YandexGPTProvider(
        ProviderConfig(
            name="yandex-sa",
            kind="yandexgpt",
            base_url=emulator.base_url,
            credential=credential,
            options={
                "folder_id": FOLDER,
                "auth": "service_account",
                "iam_url": emulator.url(IAM_PATH),
                **options,
            },
        )
    )


def exchanges(emulator: RunningEmulator) -> int:
    return int(emulator.control.stats()["requests_by_path"].get(IAM_PATH, 0))


def hello() -> ChatRequest:
    return ChatRequest(model="yandexgpt-lite", messages=[Message(role="user", content="привет")])


def test_jwt_is_exchanged_once_and_shared_by_workers(
    emulator: RunningEmulator, key_file: Path
) -> None:
    emulator.control.reset()
    first = adapter(emulator, service_account_key_file=str(key_file))
    assert first.chat(hello()).choices[0].message.content == "Ответ 🤖: Echo: привет"
    sent = emulator.control.stats()["last_request"]["headers"]["authorization"]
    assert sent.startswith("Bearer t1.")
    # A second "worker" (fresh adapter, empty local memo) reads the shared cache.
    second = adapter(emulator, credential=key_file.read_text())
    second.chat(hello())
    assert exchanges(emulator) == 1
    assert (first.iam.exchanges, second.iam.exchanges) == (1, 0)  # type: ignore[union-attr]
    first.close()
    second.close()


def test_refresh_is_single_flight(emulator: RunningEmulator, key_file: Path) -> None:
    emulator.control.reset()
    adapters = [adapter(emulator, service_account_key_file=str(key_file)) for _ in range(8)]
    tokens: list[str] = []
    barrier = threading.Barrier(len(adapters))

    def fetch(source: YandexGPTProvider) -> None:
        barrier.wait()
        tokens.append(source.iam.token())  # type: ignore[union-attr]

    threads = [threading.Thread(target=fetch, args=(a,)) for a in adapters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(tokens) == 8 and len(set(tokens)) == 1
    assert exchanges(emulator) == 1
    for a in adapters:
        a.close()


def test_refused_token_is_replaced_once(emulator: RunningEmulator, key_file: Path) -> None:
    emulator.control.reset()
    source = adapter(emulator, service_account_key_file=str(key_file))
    source.chat(hello())
    assert source.iam is not None
    # Simulate a token the upstream no longer accepts, in both cache tiers.
    bogus = {"token": "t1.revoked", "expires_at": 4e9, "refresh_at": 4e9}
    cache.set(source.iam.cache_key, bogus, 600)
    source.iam._local = None
    source.chat(hello())
    assert exchanges(emulator) == 2
    assert cache.get(source.iam.cache_key)["token"] != "t1.revoked"
    source.close()


def test_signature_from_another_key_is_rejected(emulator: RunningEmulator) -> None:
    emulator.control.reset()
    forged = key_json(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    source = adapter(emulator, credential=forged)
    with pytest.raises(ProviderError) as excinfo:
        source.chat(hello())
    assert (excinfo.value.code, excinfo.value.retryable) == ("upstream_auth_failed", False)
    assert excinfo.value.upstream_status == 401
    assert exchanges(emulator) == 1
    source.close()


def test_api_key_is_refused_when_the_folder_wants_iam(emulator: RunningEmulator) -> None:
    source = YandexGPTProvider(
        ProviderConfig(
            name="yandex",
            kind="yandexgpt",
            base_url=emulator.base_url,
            credential="key",
            options={"folder_id": FOLDER},
        )
    )
    with pytest.raises(ProviderError) as excinfo:
        source.chat(hello())
    assert (excinfo.value.status, excinfo.value.code) == (502, "upstream_auth_failed")
    source.close()

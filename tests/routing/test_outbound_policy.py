"""Provider edits cannot aim credentials at any host (issue 15, Medium 6; API7).

The attack: in /admin/ point a provider at the cloud metadata service
(169.254.169.254) or a host of one's own, with ``api_key_env`` naming any
variable of the server (SECRET_KEY...). Credentials now come only from the
variables the catalog file declares, and every upstream host is checked
against the outbound policy when saved and again, after DNS resolution,
on every connection.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
import requests
from django.core.exceptions import ValidationError
from django.test import Client

from accounts.models import User
from providers.errors import ProviderError
from providers.http import HttpClient
from providers.outbound import OutboundPolicy, OutboundRefused
from routing.models import Provider
from routing.services import CatalogError, catalog_load, parse_catalog
from routing.table import get_table, reset_table

pytestmark = pytest.mark.django_db

DENIED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.170.2/v2/credentials",
    "http://[fd00:ec2::254]/latest",
    "http://[fe80::1]/v1",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://100.100.100.200/latest/meta-data/",
    "http://0.0.0.0:8000/v1",
    "http://[::ffff:169.254.169.254]/",
]


def provider(base_url: str, **fields: Any) -> Provider:
    return Provider(name="p1", kind="openai", base_url=base_url, **fields)


@pytest.mark.parametrize("url", DENIED)
def test_metadata_and_link_local_refused_at_save(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        provider(url).full_clean()
    assert "base_url" in info.value.message_dict


def test_loopback_only_when_configured(settings: Any) -> None:
    settings.XROUTER_OUTBOUND_ALLOW_LOOPBACK = False
    for url in ("http://127.0.0.1:8080/v1", "http://localhost:8080/v1", "http://[::1]/v1"):
        with pytest.raises(ValidationError, match="loopback|not an allowed upstream host"):
            provider(url).full_clean()
    settings.XROUTER_OUTBOUND_ALLOW_LOOPBACK = True
    provider("http://127.0.0.1:8080/v1").full_clean()


def test_private_networks_allowed_unless_denied(settings: Any) -> None:
    provider("http://10.1.2.3:8000/v1").full_clean()
    settings.XROUTER_OUTBOUND_DENY = ["10.0.0.0/8", "evil.example"]
    with pytest.raises(ValidationError, match="denied network 10.0.0.0/8"):
        provider("http://10.1.2.3:8000/v1").full_clean()
    with pytest.raises(ValidationError, match="not an allowed upstream host"):
        provider("https://evil.example/v1").full_clean()


def test_allow_list_of_hosts(settings: Any) -> None:
    settings.XROUTER_OUTBOUND_ALLOW_HOSTS = ["llm.api.cloud.yandex.net", "*.sberbank.ru"]
    policy = OutboundPolicy.build(allow_hosts=settings.XROUTER_OUTBOUND_ALLOW_HOSTS)
    policy.check_host("llm.api.cloud.yandex.net")
    policy.check_host("gigachat.devices.sberbank.ru")
    for host in ("sberbank.ru.evil.example", "example.com", "evilsberbank.ru"):
        with pytest.raises(OutboundRefused, match="XROUTER_OUTBOUND_ALLOW_HOSTS"):
            policy.check_host(host)


def test_a_name_that_resolves_to_metadata_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Also at save time: the name is resolved when it resolves from here."""
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"sneaky.example": "169.254.169.254"}))
    with pytest.raises(ValidationError, match=r"sneaky.example \(169.254.169.254\)"):
        provider("https://sneaky.example/v1").full_clean()


def _resolver(answers: dict[str, str]) -> Callable[..., Any]:
    real = socket.getaddrinfo

    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            family = socket.AF_INET6 if ":" in answers[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (answers[host], int(port or 0)))]
        return real(host, port, *args, **kwargs)

    return resolve


def test_call_time_check_after_dns_rebinding(
    monkeypatch: pytest.MonkeyPatch, upstream: Any
) -> None:
    """A name saved while harmless that later resolves to metadata is refused."""
    port = int(upstream.base_url.rsplit(":", 1)[1])
    client = HttpClient(provider="rebind")
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"upstream.test": "127.0.0.1"}))
    assert client.get(f"http://upstream.test:{port}/_emulator/health").status_code == 200
    client.close()
    client = HttpClient(provider="rebind")
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"upstream.test": "169.254.169.254"}))
    with pytest.raises(ProviderError) as info:
        client.get(f"http://upstream.test:{port}/_emulator/health")
    assert info.value.code == "upstream_address_refused"
    assert info.value.message == "rebind's address is refused by the outbound policy"


def test_gateway_refuses_a_tightened_policy_at_call_time(
    gateway: Any, settings: Any, upstream_control: Any
) -> None:
    """Saved under a loose policy, called under a strict one: no byte leaves."""
    settings.XROUTER_OUTBOUND_ALLOW_LOOPBACK = False
    reset_table()
    before = upstream_control.stats()["requests_by_path"].get("/v1/chat/completions", 0)
    response = requests.post(
        gateway.url + "/v1/chat/completions",
        headers=gateway.headers,
        json={"model": "local/mock", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_address_refused"
    after = upstream_control.stats()["requests_by_path"].get("/v1/chat/completions", 0)
    assert after == before


# --- credentials ------------------------------------------------------------------


def test_catalog_cannot_name_the_platforms_own_secret() -> None:
    catalog = """
providers:
  - name: leak
    kind: openai
    base_url: https://api.example.com/v1
    api_key_env: SECRET_KEY
models: []
"""
    with pytest.raises(CatalogError, match="SECRET_KEY holds XRouter's own secret"):
        catalog_load(parse_catalog(catalog))


def test_provider_added_in_admin_gets_no_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_SECRET", "do-not-send")
    added = Provider.objects.create(
        name="added",
        kind="openai",
        base_url="https://api.example.com/v1",
        api_key_env="SOME_SECRET",
    )
    assert added.credential_problem() == (
        "credential variables are declared in the catalog file only"
    )
    reset_table()
    entry = get_table().providers["added"]
    assert entry.config.credential == ""
    assert entry.unavailable == "credential variables are declared in the catalog file only"


def _admin() -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "x" * 20)
    client = Client()
    client.force_login(user)
    return client


def test_admin_cannot_set_credentials_or_metadata_urls() -> None:
    admin = _admin()
    page = admin.get("/admin/routing/provider/add/")
    assert b'name="api_key_env"' not in page.content
    response = admin.post(
        "/admin/routing/provider/add/",
        {
            "name": "evil",
            "kind": "openai",
            "base_url": "http://169.254.169.254/latest",
            "api_key_env": "SECRET_KEY",
            "options": "{}",
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    assert (
        "169.254.169.254 is in the denied network 169.254.0.0/16"
        in (response.context["adminform"].form.errors["base_url"][0])
    )
    assert not Provider.objects.filter(name="evil").exists()
    ok = admin.post(
        "/admin/routing/provider/add/",
        {
            "name": "ok",
            "kind": "openai",
            "base_url": "https://api.example.com/v1",
            "api_key_env": "SECRET_KEY",
            "options": "{}",
        },
    )
    assert ok.status_code == 302
    assert Provider.objects.get(name="ok").api_key_env == ""


def test_admin_cannot_redirect_a_catalog_provider(load_catalog: Callable[[str], None]) -> None:
    load_catalog(
        """
providers:
  - name: real
    kind: openai
    base_url: https://api.example.com/v1
    api_key_env: TEST_UPSTREAM_KEY
models: []
"""
    )
    real = Provider.objects.get(name="real")
    admin = _admin()
    response = admin.post(
        f"/admin/routing/provider/{real.pk}/change/",
        {
            "name": "real",
            "kind": "openai",
            "base_url": "https://attacker.example/v1",
            "api_key_env": "DATABASE_URL",
            "options": "{}",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    real.refresh_from_db()
    assert (real.base_url, real.api_key_env) == ("https://api.example.com/v1", "TEST_UPSTREAM_KEY")

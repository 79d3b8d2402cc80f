"""One client-IP function with a trusted-proxy setting (issue 15, Medium 12).

Behind a proxy on the same host, ``/metrics`` (loopback allowed by
default) became public and every per-address throttle site-wide. The
client is the right-most ``X-Forwarded-For`` hop that is not a trusted
proxy; without trusted proxies the header is ignored.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory, override_settings

from xrouter_site.client_ip import UNKNOWN, client_ip

PROXIES = ["127.0.0.1/32", "10.0.0.0/8"]


def ip_of(remote: str, forwarded: str | None = None) -> str:
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip(RequestFactory().get("/", **extra))


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert ip_of("198.51.100.7", "203.0.113.9") == "198.51.100.7"


@override_settings(XROUTER_TRUSTED_PROXIES=PROXIES)
@pytest.mark.parametrize(
    "remote, forwarded, expected",
    [
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),  # one proxy
        ("127.0.0.1", "203.0.113.9, 10.1.1.1", "203.0.113.9"),  # two proxies
        ("127.0.0.1", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # client-prepended spoof
        ("198.51.100.7", "203.0.113.9", "198.51.100.7"),  # untrusted peer: header ignored
        ("127.0.0.1", None, "127.0.0.1"),  # local call, no header
        ("127.0.0.1", "10.2.2.2", "10.2.2.2"),  # every hop trusted: the left-most
        ("127.0.0.1", "not-an-ip, 203.0.113.9", "203.0.113.9"),
        ("127.0.0.1", "203.0.113.9, garbage", "127.0.0.1"),  # stop at what we trust
        ("127.0.0.1", "[2001:db8::5]:443", "2001:db8::5"),
        ("127.0.0.1", "203.0.113.9:51234", "203.0.113.9"),
        ("::ffff:127.0.0.1", "203.0.113.9", "203.0.113.9"),  # v4-mapped peer
    ],
)
def test_right_most_untrusted_hop(remote: str, forwarded: str | None, expected: str) -> None:
    assert ip_of(remote, forwarded) == expected


def test_no_address_is_one_shared_bucket() -> None:
    assert ip_of("") == UNKNOWN


@override_settings(XROUTER_TRUSTED_PROXIES=["not-a-network"])
def test_bad_setting_fails_loudly() -> None:
    with pytest.raises(ImproperlyConfigured, match="XROUTER_TRUSTED_PROXIES"):
        ip_of("127.0.0.1")


@pytest.mark.django_db
def test_metrics_behind_a_local_proxy_is_not_public(settings: Any) -> None:
    """The attack: nginx on the same host makes every scraper look like loopback."""
    settings.XROUTER_METRICS_TOKEN = ""
    settings.XROUTER_METRICS_ALLOW = []
    settings.XROUTER_TRUSTED_PROXIES = ["127.0.0.1/32"]
    client = Client()
    internet = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6")
    assert internet.status_code == 403
    spoofed = client.get(
        "/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1, 6.6.6.6"
    )
    assert spoofed.status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200


@pytest.mark.django_db
@override_settings(XROUTER_TRUSTED_PROXIES=["127.0.0.1/32"])
def test_signup_throttle_counts_clients_behind_the_proxy() -> None:
    """Ten sign-ups an hour per client, not per proxy: one abuser blocks nobody else."""
    client = Client(REMOTE_ADDR="127.0.0.1")
    for i in range(10):
        client.post("/accounts/signup/", {"username": f"u{i}"}, HTTP_X_FORWARDED_FOR="6.6.6.6")
    blocked = client.post("/accounts/signup/", {"username": "x"}, HTTP_X_FORWARDED_FOR="6.6.6.6")
    assert blocked.status_code == 429
    other = client.post("/accounts/signup/", {"username": "y"}, HTTP_X_FORWARDED_FOR="7.7.7.7")
    assert other.status_code == 200


def test_old_switch_is_refused_with_a_pointer() -> None:
    env = dict(os.environ, XROUTER_TRUST_X_FORWARDED_FOR="true")
    env["DJANGO_SETTINGS_MODULE"] = "xrouter_site.settings"
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "XROUTER_TRUSTED_PROXIES" in out.stderr

"""deploy/certs/make_bundle.py: the GigaChat CA bundle built into the image."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "certs" / "make_bundle.py"


def certificate(common_name: str, *, ca: bool) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def run(source: Path, output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(source), str(output)], capture_output=True, text=True
    )


def test_bundle_is_certifi_plus_the_ca_files_pem_and_der(tmp_path: Path) -> None:
    root = certificate("Russian Trusted Root CA (test)", ca=True)
    sub = certificate("Russian Trusted Sub CA (test)", ca=True)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "root.cer").write_bytes(root.public_bytes(serialization.Encoding.DER))
    (tmp_path / "src" / "sub.crt").write_bytes(sub.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "src" / "README.md").write_text("not a certificate")

    result = run(tmp_path / "src", tmp_path / "out")

    assert result.returncode == 0, result.stderr
    fingerprint = root.fingerprint(hashes.SHA256()).hex(":").upper()
    assert fingerprint in result.stdout
    bundle = (tmp_path / "out" / "russian_trusted_root_ca_bundle.pem").read_bytes()
    assert bundle.startswith(Path(certifi.where()).read_bytes().rstrip(b"\n"))
    loaded = x509.load_pem_x509_certificates(bundle)
    assert loaded[-2:] == [root, sub]


def test_a_leaf_certificate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    leaf = certificate("gigachat.example", ca=False)
    (tmp_path / "src" / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))

    result = run(tmp_path / "src", tmp_path / "out")

    assert result.returncode != 0
    assert "is not a CA certificate" in result.stderr
    assert not (tmp_path / "out" / "russian_trusted_root_ca_bundle.pem").exists()


def test_no_certificates_writes_no_bundle(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    result = run(tmp_path / "src", tmp_path / "out")
    assert result.returncode == 0
    assert "mount" in result.stdout
    assert list((tmp_path / "out").iterdir()) == []

"""Build the GigaChat CA bundle from the certificates in a directory.

    python deploy/certs/make_bundle.py SOURCE_DIR OUTPUT_DIR

Reads every *.crt, *.cer and *.pem in SOURCE_DIR (PEM or DER), refuses any
that is not a CA certificate, prints each subject and SHA-256 fingerprint
(compare them with the ones published on the official page, README.md) and
writes OUTPUT_DIR/russian_trusted_root_ca_bundle.pem: certifi's public roots
followed by those certificates, so the provider keeps working if a host moves
to a publicly trusted certificate. With no certificate in SOURCE_DIR it only
creates OUTPUT_DIR (the image then expects a bundle mounted at run time).
"""

from __future__ import annotations

import sys
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

BUNDLE_NAME = "russian_trusted_root_ca_bundle.pem"
SUFFIXES = {".crt", ".cer", ".pem"}


def load(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise SystemExit(f"{path}: not an X.509 certificate ({exc})") from None


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, output = Path(argv[0]), Path(argv[1])
    output.mkdir(parents=True, exist_ok=True)
    paths = sorted(p for p in source.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    if not paths:
        print(f"no CA certificate in {source}: mount {BUNDLE_NAME} at run time instead")
        return 0
    pems = []
    for path in paths:
        cert = load(path)
        if not is_ca(cert):
            raise SystemExit(f"{path}: {cert.subject.rfc4514_string()} is not a CA certificate")
        fingerprint = cert.fingerprint(hashes.SHA256()).hex(":").upper()
        print(f"{path.name}: {cert.subject.rfc4514_string()}\n  SHA-256 {fingerprint}")
        pems.append(cert.public_bytes(Encoding.PEM).decode("ascii"))
    bundle = Path(certifi.where()).read_text(encoding="ascii").rstrip("\n") + "\n"
    (output / BUNDLE_NAME).write_text(bundle + "".join(pems), encoding="ascii")
    print(f"wrote {output / BUNDLE_NAME} ({len(pems)} extra CA certificate(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

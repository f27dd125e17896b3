"""Self-signed certificates in place of Let's Encrypt's, for the lab's nginx.

Where NPM runs certbot, the lab writes a self-signed certificate for the same names, valid until the
`expires_on` NPM's API reports, as fullchain.pem and privkey.pem (0600) in the folder NPM would use
(`Layout.certificate_files`). A certificate that is deleted loses its files, as certbot deletes them in NPM.
"""

from __future__ import annotations

import ipaddress
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.npm.files import write_atomic
from lab.npm.nginx import Layout

DEFAULT_NAME = "localhost-nginx-proxy-manager"  # the default server's certificate (NPM's dummycert.pem)


class CertificateStore:
    """The certificate files of the lab's nginx, by NPM certificate id."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._known: dict[str, tuple[tuple[str, ...], datetime]] = {}

    def ensure(self, certificate_id: int | str, names: tuple[str, ...], not_after: datetime) -> None:
        """Make the files unless they already hold a certificate for exactly `names`."""
        key = str(certificate_id)
        wanted = (tuple(sorted(n.lower() for n in names)), not_after.astimezone(UTC).replace(microsecond=0))
        if self._known.get(key) == wanted:
            return
        fullchain, privkey = self.layout.certificate_files(key)
        if not (privkey.is_file() and self._holds(fullchain, wanted)):
            self._write(fullchain, privkey, names, wanted[1])
        self._known[key] = wanted

    def ensure_default(self) -> None:
        self.ensure("default", (DEFAULT_NAME,), datetime.now(UTC) + timedelta(days=3650))

    def prune(self, keep: set[int]) -> None:
        """Delete the files of every certificate not in `keep` (and not the default server's)."""
        if not self.layout.certificates.is_dir():
            return
        for folder in self.layout.certificates.iterdir():
            suffix = folder.name.removeprefix("npm-")
            if suffix == "default" or (suffix.isdigit() and int(suffix) in keep):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            self._known.pop(suffix, None)

    @staticmethod
    def _holds(fullchain: Path, wanted: tuple[tuple[str, ...], datetime]) -> bool:
        try:
            certificate = x509.load_pem_x509_certificate(fullchain.read_bytes())
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            return False
        names = tuple(sorted(name.lower() for name in san.get_values_for_type(x509.DNSName)))
        return (names, certificate.not_valid_after_utc) == wanted

    @staticmethod
    def _write(fullchain: Path, privkey: Path, names: tuple[str, ...], not_after: datetime) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
        now = datetime.now(UTC).replace(microsecond=0)
        alternative: list[x509.GeneralName] = []
        for name in names:
            try:
                alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternative.append(x509.DNSName(name))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now - timedelta(minutes=5), not_after - timedelta(minutes=1)))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256())
        )
        fullchain.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_atomic(privkey, key_pem)
        write_atomic(fullchain, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)

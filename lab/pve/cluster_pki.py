"""The certificates of a fake cluster, made as Proxmox VE makes them: one cluster CA (`/etc/pve/pve-root-ca.pem`)
that signs each node's own certificate (`/etc/pve/nodes/<node>/pve-ssl.pem`, the one pveproxy serves).

So a client that trusts the CA file trusts every node, while a pin (SHA-256 fingerprint) fits one node only: what
docs/real-systems.md says of a real cluster, and what api.hosts in the modules is made for.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import threading
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "pve-root-ca.pem"
CA_KEY = "pve-root-ca.key"
VALID = datetime.timedelta(days=30)


class NodeCert(NamedTuple):
    """A node's pve-ssl.pem and pve-ssl.key, and the certificate's DER bytes."""

    certfile: str
    keyfile: str
    der: bytes

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate, 64 lower-case hex digits (what api.fingerprint pins)."""
        return hashlib.sha256(self.der).hexdigest()


class ClusterPki:
    """A cluster CA in `directory` and, on demand, a certificate per node signed by it (made once, then reused)."""

    def __init__(self, directory: str | Path, hosts: tuple[str, ...] = ("127.0.0.1",)):
        self.directory = Path(directory)
        self.hosts = hosts
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeCert] = {}
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "Proxmox Virtual Environment"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "proxmoxwp-fakepve"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PVE Cluster Manager CA"),
            ]
        )
        self._name = name
        now = datetime.datetime.now(datetime.UTC)
        self._ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cafile = str(self.directory / CA_FILE)
        Path(self.cafile).write_bytes(self._ca.public_bytes(serialization.Encoding.PEM))
        _write_key(self.directory / CA_KEY, self._key)

    def node(self, node: str) -> NodeCert:
        """The node's certificate (CN <node>, for localhost, 127.0.0.1 and the node's name), signed by the CA."""
        with self._lock:
            if node not in self._nodes:
                self._nodes[node] = self._issue(node)
            return self._nodes[node]

    def _issue(self, node: str) -> NodeCert:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in ("localhost", "127.0.0.1", node, *self.hosts):
            try:
                entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
            except ValueError:
                entry = x509.DNSName(host)
            if entry not in names:
                names.append(entry)
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, node),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PVE Cluster Node"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + VALID)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        where = self.directory / "nodes" / node
        where.mkdir(parents=True, exist_ok=True)
        certfile = where / "pve-ssl.pem"
        certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        keyfile = where / "pve-ssl.key"
        _write_key(keyfile, key)
        return NodeCert(str(certfile), str(keyfile), cert.public_bytes(serialization.Encoding.DER))


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """The key readable by its owner only, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )

"""Throwaway certificates for TLS tests: a CA, a server certificate for 127.0.0.1/localhost and a client
certificate it signed, plus a second, unrelated CA with a client certificate of its own (what nobody trusts).

    certs = make_certs(tmp_path)   # PEM files under tmp_path; paths as str, ready for settings and env
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclasses.dataclass(frozen=True)
class Certs:
    ca: str  # the CA bundle every party trusts
    server_cert: str  # 127.0.0.1, ::1 and localhost, signed by `ca`
    server_key: str
    client_cert: str  # a client certificate signed by `ca`
    client_key: str
    other_ca: str  # a CA nobody trusts
    other_client_cert: str  # a client certificate signed by `other_ca`
    other_client_key: str
    other_server_cert: str  # a server certificate for 127.0.0.1/localhost signed by `other_ca`
    other_server_key: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tokenway tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> tuple[str, str]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
    return str(path.with_suffix(".crt")), str(path.with_suffix(".key"))


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2)))


def _ca(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name(name), _name(name), key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    path, _ = _write(directory / name, cert)
    return cert, key, path


def _leaf(directory: Path, name: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *,
          server: bool) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (_builder(_name(name), ca.subject, key)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    return _write(directory / name, builder.sign(ca_key, hashes.SHA256()), key)


def make_certs(directory: Path) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key, ca_path = _ca(directory, "tokenway-test-ca")
    other, other_key, other_path = _ca(directory, "untrusted-ca")
    server_cert, server_key = _leaf(directory, "server", ca, ca_key, server=True)
    client_cert, client_key = _leaf(directory, "client", ca, ca_key, server=False)
    other_client_cert, other_client_key = _leaf(directory, "untrusted-client", other, other_key, server=False)
    other_server_cert, other_server_key = _leaf(directory, "untrusted-server", other, other_key, server=True)
    return Certs(ca=ca_path, server_cert=server_cert, server_key=server_key, client_cert=client_cert,
                 client_key=client_key, other_ca=other_path, other_client_cert=other_client_cert,
                 other_client_key=other_client_key, other_server_cert=other_server_cert,
                 other_server_key=other_server_key)

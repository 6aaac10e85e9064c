"""Certificates and SuperNode keys for a FedHydra deployment (a test CA, not a production PKI).

Writes into ``--out`` (default ``deploy-keys``):

- ``ca.crt`` / ``ca.key``: a self-signed certificate authority (RSA 2048, 1 year). ``ca.crt`` is what the
  SuperLink gets as ``--ssl-ca-certfile``, the SuperNodes as ``--root-certificates`` and the Flower CLI as
  ``root-certificates`` in ``$FLWR_HOME/config.toml``. Keep ``ca.key`` off every machine once done.
- ``server.pem`` / ``server.key``: the SuperLink's TLS certificate, signed by that CA, valid for every
  ``--host`` given (names and IP addresses; default ``localhost`` and ``127.0.0.1``).
- ``supernodes/<name>`` / ``supernodes/<name>.pub``: one EC P-384 key pair per ``--supernode`` name, both in
  OpenSSH format. The private key stays on the device (``flower-supernode --auth-supernode-private-key``);
  the public key is registered with ``flwr supernode register``.

Example::

    python scripts/deploy/make_certs.py --out deploy-keys --host 127.0.0.1 --host localhost \\
        --supernode alice --supernode bob
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["make_ca_and_server", "make_supernode_key", "main"]

DEFAULT_HOSTS = ("localhost", "127.0.0.1")


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)
    return path


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_ca_and_server(out: str | Path, hosts: Sequence[str] = DEFAULT_HOSTS, *, days: int = 365) -> dict[str, Path]:
    """A CA and a server certificate for ``hosts``; returns the paths (``ca``, ``ca_key``, ``cert``, ``key``)."""
    out = Path(out)
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FedHydra test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
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
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return {
        "ca": _write(out / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM)),
        "ca_key": _write(out / "ca.key", _pem_key(ca_key), private=True),
        "cert": _write(out / "server.pem", cert.public_bytes(serialization.Encoding.PEM)),
        "key": _write(out / "server.key", _pem_key(key), private=True),
    }


def make_supernode_key(out: str | Path, name: str) -> tuple[Path, Path]:
    """An EC P-384 key pair in OpenSSH format: (``<out>/<name>``, ``<out>/<name>.pub``)."""
    out = Path(out)
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return (_write(out / name, private, private=True), _write(out / f"{name}.pub", public + f" {name}\n".encode()))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="deploy-keys", help="output directory (default: deploy-keys)")
    parser.add_argument(
        "--host",
        action="append",
        dest="hosts",
        help="a name or IP address the SuperLink is reached at (repeatable; default: localhost, 127.0.0.1)",
    )
    parser.add_argument(
        "--supernode",
        action="append",
        default=[],
        dest="supernodes",
        help="make a key pair for this SuperNode (repeatable)",
    )
    parser.add_argument("--no-tls", action="store_true", help="only make SuperNode keys")
    parser.add_argument("--days", type=int, default=365, help="certificate validity in days (default: 365)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not args.no_tls:
        for label, path in make_ca_and_server(out, args.hosts or DEFAULT_HOSTS, days=args.days).items():
            print(f"{label:8s} {path}")
    for name in args.supernodes:
        private, public = make_supernode_key(out / "supernodes", name)
        print(f"{name:8s} {private} (private, stays on the device)  {public} (register this)")


if __name__ == "__main__":
    main()

"""Provisioning: everything a node (or a console) needs to join a signed fleet.

For a node, :func:`provision_node` writes into one directory, every file 0600:

- ``identity.json``: the node's Ed25519 signing identity, its certificate signed
  by the operator, and the operator keys it trusts (``signing_key_file``);
- ``passwd``: the node's line for mosquitto's ``password_file`` (``$7$``,
  PBKDF2-SHA512, what ``mosquitto_passwd`` writes);
- ``agent.toml``: the agent's settings (broker, name, credentials, the files above);
- with a fleet CA: ``client.crt``/``client.key`` (a client certificate whose
  common name is the node); ``ca.pem``, the CA the node trusts for the broker
  (``--tls-ca``, else the fleet CA).

Running it again rotates everything: a new password, key pair, certificate.
:func:`provision_console` makes a console's own identity (and broker password).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from devfleet_base.broker_url import BrokerAddress
from devfleet_base.contract import check_name
from devfleet_base.signing import Identity

__all__ = [
    "MOSQUITTO_ITERATIONS",
    "Provisioned",
    "client_certificate",
    "mosquitto_password_hash",
    "provision_console",
    "provision_node",
]

MOSQUITTO_ITERATIONS = 101
"""mosquitto_passwd's default PBKDF2 iteration count (mosquitto 2.0, ``PW_DEFAULT_ITERATIONS``)."""


def mosquitto_password_hash(
    password: str, *, salt: bytes | None = None, iterations: int = MOSQUITTO_ITERATIONS
) -> str:
    """A password-file hash mosquitto 2.x accepts: ``$7$iterations$salt$hash``.

    ``7`` is mosquitto's ``PW_SHA512_PBKDF2``: PBKDF2-HMAC-SHA512 over the password
    with a 12-byte random salt, 64 bytes out, salt and hash in standard base64
    (mosquitto ``src/password_mosq.c``).
    """
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@dataclass
class Provisioned:
    """What :func:`provision_node` / :func:`provision_console` wrote."""

    name: str
    files: dict[str, Path] = field(default_factory=dict)
    password_line: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "files": {k: str(v) for k, v in self.files.items()}}


def _write_private(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` readable by its owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


def client_certificate(
    ca_cert: Path, ca_key: Path, common_name: str, *, days: int = 825
) -> tuple[bytes, bytes]:
    """A TLS client certificate for ``common_name`` signed by the fleet's CA.

    Returns:
        ``(certificate PEM, private key PEM)``: an ECDSA P-256 key, ``clientAuth`` only.

    Raises:
        ValueError: the CA files are not a PEM certificate and key.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    try:
        ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    except OSError as exc:
        raise ValueError(f"cannot read the CA: {exc.strerror}: {exc.filename}") from None
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _toml(settings: dict[str, object]) -> str:
    lines = ["# written by devfleet provision; re-run it to rotate the credentials"]
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(value)}")  # JSON strings, ints and bools are TOML
    return "\n".join(lines) + "\n"


def provision_node(
    operator: Identity,
    node: str,
    out: Path,
    *,
    broker: BrokerAddress,
    install_dir: str = "/etc/devfleet",
    ca: tuple[Path, Path] | None = None,
    broker_ca: Path | None = None,
) -> Provisioned:
    """Write a node's identity, broker credentials, optional client certificate and
    ``agent.toml`` into ``out`` (see the module docstring); rotate on a re-run.

    Args:
        operator: the console identity that certifies the node (it must not be a node's).
        node: the node name (also its broker user name and certificate common name).
        out: the directory to write.
        broker: where the node connects (host, port, TLS).
        install_dir: where the files will live on the node (paths in ``agent.toml``).
        ca: the fleet CA's certificate and key, for a client certificate.
        broker_ca: the CA the node trusts for the broker's certificate (default: the
            fleet CA with ``ca``, else the system's trust store).

    Raises:
        ContractError: a bad node name.
        ValueError: the operator is a node identity, or the CA cannot be used.
    """
    check_name(node, "node")
    if operator.kid.startswith("node:"):
        raise ValueError(f"{operator.kid} is a node identity; provision with the console's identity")
    result = Provisioned(node)
    identity = operator.issue_node(node)
    result.files["identity"] = identity.save(out / "identity.json")
    password = secrets.token_urlsafe(24)
    result.password_line = f"{node}:{mosquitto_password_hash(password)}"
    result.files["passwd"] = _write_private(out / "passwd", result.password_line + "\n")
    settings: dict[str, object] = {
        "broker": broker.host,
        "port": broker.port,
        "name": node,
        "username": node,
        "password": password,
        "signing_key_file": f"{install_dir}/identity.json",
    }
    trust = broker_ca or (ca[0] if ca is not None else None)
    if trust is not None:
        try:
            result.files["ca"] = _write_private(out / "ca.pem", trust.read_bytes())
        except OSError as exc:
            raise ValueError(f"cannot read the CA: {exc.strerror}: {exc.filename}") from None
        settings["tls_ca"] = f"{install_dir}/ca.pem"
    elif broker.tls:
        settings["tls"] = True
    if ca is not None:
        cert, key = client_certificate(ca[0], ca[1], node)
        result.files["client_cert"] = _write_private(out / "client.crt", cert)
        result.files["client_key"] = _write_private(out / "client.key", key)
        settings.update(tls_cert=f"{install_dir}/client.crt", tls_key=f"{install_dir}/client.key")
    result.files["agent_toml"] = _write_private(out / "agent.toml", _toml(settings))
    return result


def provision_console(name: str, out: Path) -> Provisioned:
    """Write a console's own identity (``{name}.json``) and broker password line into
    ``out``; the identity file is what ``--signing-key-file`` reads.

    Raises:
        ContractError: a bad name.
    """
    check_name(name, "console")
    result = Provisioned(name)
    result.files["identity"] = Identity.generate(name).save(out / f"{name}.json")
    password = secrets.token_urlsafe(24)
    result.password_line = f"{name}:{mosquitto_password_hash(password)}"
    result.files["passwd"] = _write_private(out / "passwd", result.password_line + "\n")
    result.files["password"] = _write_private(out / "password", password + "\n")
    return result

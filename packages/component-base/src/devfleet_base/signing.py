"""Signed messages: an Ed25519 identity per operator (console) and per node.

Who signs what (the trust model of ``docs/contract.md``):

- An **operator** (a console) signs control messages to nodes with its own key.
  A node trusts the operator public keys it was provisioned with (its keyring)
  and nothing else: a node's own key never authorises a command.
- A **node** signs what it publishes (receipts, retained descriptions, actor
  heartbeats, migration results) with its own key, and carries its
  **certificate** (its name and public key, signed by an operator) in every
  signature, so consoles and peers that trust the operator can check that a
  message claiming to come from node X was signed by X's key.

The signature travels inside the JSON payload, so it survives any broker
(MQTT 3.1.1 included)::

    "_sig": {"kid": "console-a", "seq": 1795307756123456, "exp": 1795307786,
             "sig": "<128 hex>", "cert": {...}}          # cert: node signatures only

``sig`` is Ed25519 over ``b"devfleet-sig/2\\n" + canonical({"body", "exp",
"kid", "seq", "topic"})`` where ``body`` is the payload without ``_sig`` and
``canonical`` is JSON with sorted keys, no whitespace, ``ensure_ascii=False``.
So the key id, the topic, the sequence and the expiry are all signed: a message
cannot be moved to another topic, re-attributed to another signer or kept
alive longer. Replays within the expiry are refused by the node's one
:class:`~devfleet_base.replay.ReplayGuard`.

Why Ed25519 and not HMAC (measured, see ``docs/contract.md``): one operator
signature is checked by every node of a broadcast, and a node that can check a
signature cannot forge one, so node A's key is useless against node B and a
peer can check another node's heartbeat. ``cryptography`` is imported on first
use only (``pip install devfleet-component-base[signing]``).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .errors import Code, ContractError, SignatureError

if TYPE_CHECKING:
    from .replay import ReplayGuard

__all__ = [
    "DEFAULT_TTL",
    "KID_PATTERN",
    "MAX_TTL",
    "RETAINED_TTL",
    "Identity",
    "Keyring",
    "NodeVerifier",
    "Verifier",
    "canonical",
    "node_kid",
    "signed_bytes",
]

SIG_KEY: Final = "_sig"
DOMAIN: Final = b"devfleet-sig/2\n"
CERT_DOMAIN: Final = b"devfleet-cert/1\n"
KID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"
DEFAULT_TTL: Final = 300.0
"""Seconds a signature lives when the payload names no expiry of its own."""
MAX_TTL: Final = 30 * 86400.0
"""The furthest expiry a node accepts (keeps the replay guard bounded in time)."""
RETAINED_TTL: Final = 29 * 86400.0
"""The expiry consoles give retained control messages (desired config, spawn): valid for
a node that comes back within 29 days."""
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_KID = re.compile(KID_PATTERN)


def node_kid(node: str) -> str:
    """The key id a node signs with: ``node:{node}``."""
    return f"node:{node}"


def canonical(obj: Any) -> bytes:
    """JSON with sorted keys, no whitespace, UTF-8 (the signed form)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed_bytes(topic: str, kid: str, seq: int, exp: int | None, payload: Mapping[str, Any]) -> bytes:
    """The bytes an Ed25519 signature covers (see the module docstring)."""
    body = {k: v for k, v in payload.items() if k != SIG_KEY}
    return DOMAIN + canonical({"body": body, "exp": exp, "kid": kid, "seq": seq, "topic": topic})


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - depends on the install
        raise SignatureError(
            "signing needs the 'cryptography' package: pip install 'devfleet-component-base[signing]' "
            "(on a Raspberry Pi Zero: piwheels, or apt install python3-cryptography)"
        ) from None
    return ed25519


def _public(hex_key: str) -> Any:
    if not isinstance(hex_key, str) or not _HEX64.fullmatch(hex_key):
        raise SignatureError("a public key must be 64 hex digits")
    try:
        return _ed25519().Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))
    except ValueError as exc:
        raise SignatureError(f"not an Ed25519 public key: {exc}") from None


def _check_sig(public: Any, sig_hex: str, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public.verify(bytes.fromhex(sig_hex), data)
    except InvalidSignature:
        return False
    return True


def _expiry(payload: Mapping[str, Any], ttl: float | None, now: float) -> int | None:
    for key in ("expires_at", "_expires_at"):
        value = payload.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return math.ceil(value)
    return None if ttl is None else math.ceil(now + ttl)


class Identity:
    """A signing identity: a key id and an Ed25519 private key.

    A node's identity also holds its certificate (``cert``) and the operator
    keys it trusts (``trusted``); a console's holds the operator keys it trusts
    to certify nodes (its own public key is always trusted).

    Args:
        kid: the key id (``console-a``, ``node:rpi-1``).
        private_key: the 32-byte Ed25519 seed.
        cert: a node's certificate (see :meth:`certify`).
        trusted: operator key id -> public key (hex).
    """

    def __init__(
        self,
        kid: str,
        private_key: bytes,
        *,
        cert: dict[str, Any] | None = None,
        trusted: Mapping[str, str] | None = None,
    ) -> None:
        if not _KID.fullmatch(kid):
            raise SignatureError(f"bad key id {kid!r}")
        if len(private_key) != 32:
            raise SignatureError("an Ed25519 private key is 32 bytes")
        self.kid = kid
        self._key = _ed25519().Ed25519PrivateKey.from_private_bytes(private_key)
        self._seed = private_key
        from cryptography.hazmat.primitives import serialization

        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_key: str = raw.hex()
        self.cert = cert
        self.trusted = Keyring(trusted or {})
        self._last = 0
        self._lock = threading.Lock()

    # ---- making and storing ------------------------------------------------------

    @classmethod
    def generate(cls, kid: str, **kwargs: Any) -> Identity:
        """A fresh identity with a random key."""
        import os

        return cls(kid, os.urandom(32), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The identity file's content (keep it 0600: it holds the private key)."""
        out: dict[str, Any] = {
            "kid": self.kid,
            "private_key": self._seed.hex(),
            "public_key": self.public_key,
            "trusted": self.trusted.to_dict(),
        }
        if self.cert is not None:
            out["cert"] = self.cert
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Identity:
        """Read an identity file's content.

        Raises:
            SignatureError: a missing or malformed field.
        """
        if not isinstance(data, dict):
            raise SignatureError("an identity must be a JSON object")
        kid, key = data.get("kid"), data.get("private_key")
        if not isinstance(kid, str) or not isinstance(key, str) or not _HEX64.fullmatch(key):
            raise SignatureError("an identity needs 'kid' and 'private_key' (64 hex digits)")
        trusted = data.get("trusted", {})
        if not isinstance(trusted, dict):
            raise SignatureError("'trusted' must map key ids to public keys")
        cert = data.get("cert")
        if cert is not None and not isinstance(cert, dict):
            raise SignatureError("'cert' must be an object")
        ident = cls(kid, bytes.fromhex(key), cert=cert, trusted=trusted)
        if data.get("public_key", ident.public_key) != ident.public_key:
            raise SignatureError("'public_key' does not belong to 'private_key'")
        return ident

    @classmethod
    def load(cls, path: str | Path) -> Identity:
        """Read an identity file (written by ``devfleet provision``).

        Raises:
            SignatureError: unreadable or malformed (the message names the file).
        """
        p = Path(path).expanduser()
        try:
            data = json.loads(p.read_text())
        except OSError as exc:
            raise SignatureError(f"cannot read the signing identity {p}: {exc.strerror}") from None
        except ValueError as exc:
            raise SignatureError(f"{p} is not a devfleet identity (JSON): {exc}") from None
        try:
            return cls.from_dict(data)
        except SignatureError as exc:
            raise SignatureError(f"{p}: {exc.message}") from None

    def save(self, path: str | Path) -> Path:
        """Write the identity file, readable by its owner only (0600, replaced atomically)."""
        import os

        p = Path(path).expanduser()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n")
        os.replace(tmp, p)
        return p

    def issue_node(self, node: str) -> Identity:
        """A fresh identity for ``node``, certified by this operator and trusting it (and
        the operators this one trusts): what ``devfleet provision`` writes for a node."""
        ident = Identity.generate(node_kid(node))
        ident.cert = self.certify(node, ident.public_key)
        ident.trusted = self.operators()
        return ident

    def operators(self) -> Keyring:
        """The operator keys this identity trusts; an operator trusts itself too."""
        keys = self.trusted.to_dict()
        if not self.kid.startswith("node:"):
            keys[self.kid] = self.public_key
        return Keyring(keys)

    # ---- signing -------------------------------------------------------------------

    def _next_seq(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            return self._last

    def sign(
        self, topic: str, payload: Mapping[str, Any], *, ttl: float | None = DEFAULT_TTL
    ) -> dict[str, Any]:
        """A copy of ``payload`` with a fresh ``_sig`` for ``topic``.

        The expiry is the payload's own ``expires_at``/``_expires_at`` if it has
        one, else now + ``ttl`` seconds (``None``: no expiry, for retained
        descriptions). A node's certificate rides along.
        """
        seq = self._next_seq()
        exp = _expiry(payload, ttl, time.time())
        sig: dict[str, Any] = {
            "kid": self.kid,
            "seq": seq,
            "exp": exp,
            "sig": self._key.sign(signed_bytes(topic, self.kid, seq, exp, payload)).hex(),
        }
        if self.cert is not None:
            sig["cert"] = self.cert
        signed = {k: v for k, v in payload.items() if k != SIG_KEY}
        signed[SIG_KEY] = sig
        return signed

    def certify(self, node: str, public_key: str, *, now: float | None = None) -> dict[str, Any]:
        """A certificate binding ``node`` to ``public_key``, signed by this (operator) identity."""
        _public(public_key)
        cert = {
            "node": node,
            "public_key": public_key,
            "issuer": self.kid,
            "issued_at": int(now if now is not None else time.time()),
        }
        cert["sig"] = self._key.sign(CERT_DOMAIN + canonical(cert)).hex()
        return cert


class Keyring:
    """Trusted operator keys: key id -> Ed25519 public key (hex)."""

    def __init__(self, keys: Mapping[str, str] | None = None) -> None:
        self._hex: dict[str, str] = {}
        self._keys: dict[str, Any] = {}
        for kid, key in (keys or {}).items():
            self.add(kid, key)

    def add(self, kid: str, public_key: str) -> None:
        """Trust ``public_key`` for ``kid``; raise SignatureError if either is malformed."""
        if not isinstance(kid, str) or not _KID.fullmatch(kid) or kid.startswith("node:"):
            raise SignatureError(f"bad operator key id {kid!r} (node:... ids are node keys)")
        self._keys[kid] = _public(public_key)
        self._hex[kid] = public_key

    def get(self, kid: str) -> Any:
        return self._keys.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def to_dict(self) -> dict[str, str]:
        return dict(self._hex)


def _read_sig(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise SignatureError("a signed message must be a JSON object")
    sig = payload.get(SIG_KEY)
    if sig is None:
        raise SignatureError("this node requires signed messages; the message has no _sig")
    exp = sig.get("exp") if isinstance(sig, dict) else None
    if (
        not isinstance(sig, dict)
        or not isinstance(sig.get("kid"), str)
        or not _KID.fullmatch(sig["kid"])
        or not isinstance(sig.get("seq"), int)
        or isinstance(sig.get("seq"), bool)
        or sig["seq"] < 0
        or not (exp is None or (isinstance(exp, int) and not isinstance(exp, bool)))
        or not isinstance(sig.get("sig"), str)
        or not _HEX128.fullmatch(sig["sig"])
    ):
        raise SignatureError("_sig must be {kid, seq: int, exp: int|null, sig: 128 hex}")
    return sig


class Verifier:
    """Checks operator-signed control messages on a node.

    Args:
        keyring: the operator keys the node was provisioned with.
        guard: the node's one replay guard (persisted across restarts).
        clock: Unix time now.
    """

    def __init__(self, keyring: Keyring, guard: ReplayGuard, *, clock: Any = time.time) -> None:
        self.keyring = keyring
        self.guard = guard
        self._clock = clock

    def check(self, topic: str, payload: Any, *, evidence: bool = False) -> str:
        """Check ``payload`` signed for ``topic`` by a trusted operator; return its key id.

        With ``evidence`` only the signature counts (however old, not spent): for an
        operator-signed message that another one refers to, as a migration carries
        the original spawn.

        Raises:
            SignatureError: unsigned, unknown signer, forged, no or a too distant
                expiry (``bad_signature``); expired (``expired``); seen before
                (``replay``).
        """
        sig = _read_sig(payload)
        kid, seq, exp = sig["kid"], sig["seq"], sig["exp"]
        key = self.keyring.get(kid)
        if key is None:
            raise SignatureError(f"signer {kid!r} is not one of this node's operators")
        if not _check_sig(key, sig["sig"], signed_bytes(topic, kid, seq, exp, payload)):
            raise SignatureError("signature does not match (wrong key, other topic, or altered)")
        if evidence:
            return str(kid)
        now = self._clock()
        if exp is None:
            raise SignatureError("a signed control message must carry an expiry (_sig.exp)")
        if exp < now:
            raise SignatureError(f"signature expired {now - exp:.0f} s ago; not run", code=Code.EXPIRED)
        if exp > now + MAX_TTL:
            raise SignatureError(f"signature expiry is more than {MAX_TTL / 86400:g} days away")
        self.guard.check_and_record(kid, seq, exp)
        return str(kid)


class NodeVerifier:
    """Checks messages signed by nodes (for consoles and peers).

    A node signature carries the node's certificate; it is believed when an
    operator in ``keyring`` issued the certificate for the node the message
    claims to come from. Certificates are checked once and cached.
    """

    def __init__(self, keyring: Keyring, *, max_cached: int = 100_000) -> None:
        self.keyring = keyring
        self._certs: dict[str, tuple[str, Any]] = {}
        self._max = max_cached

    def node_key(self, cert: Any) -> tuple[str, Any]:
        """``(node, public key)`` of a certificate an operator in the keyring issued.

        Raises:
            SignatureError: malformed, unknown issuer, or forged.
        """
        if not isinstance(cert, dict) or not isinstance(cert.get("sig"), str):
            raise SignatureError("a node signature must carry the node's certificate")
        cached = self._certs.get(cert["sig"])
        if cached is not None:
            return cached
        node, public, issuer = cert.get("node"), cert.get("public_key"), cert.get("issuer")
        if not isinstance(node, str) or not isinstance(issuer, str) or not _HEX128.fullmatch(cert["sig"]):
            raise SignatureError("malformed node certificate")
        operator = self.keyring.get(issuer)
        if operator is None:
            raise SignatureError(f"the certificate of {node!r} was issued by {issuer!r}, who is not trusted")
        body = {k: v for k, v in cert.items() if k != "sig"}
        if not _check_sig(operator, cert["sig"], CERT_DOMAIN + canonical(body)):
            raise SignatureError(f"the certificate of {node!r} is forged")
        entry = (node, _public(str(public)))
        if len(self._certs) >= self._max:
            self._certs.clear()
        self._certs[cert["sig"]] = entry
        return entry

    def check(self, node: str, topic: str, payload: Any, *, now: float | None = None) -> None:
        """Check that ``payload`` on ``topic`` was signed by ``node``'s certified key.

        Raises:
            SignatureError: unsigned, signed by another node, forged or expired.
        """
        sig = _read_sig(payload)
        certified, key = self.node_key(sig.get("cert"))
        if certified != node or sig["kid"] != node_kid(node):
            raise SignatureError(f"a message claiming to come from {node!r} was signed by {certified!r}")
        if not _check_sig(key, sig["sig"], signed_bytes(topic, sig["kid"], sig["seq"], sig["exp"], payload)):
            raise SignatureError(f"forged signature for {node!r}")
        exp = sig["exp"]
        if exp is not None and exp < (now if now is not None else time.time()):
            raise SignatureError(f"signature of {node!r} expired", code=Code.EXPIRED)

    def valid(self, node: str, topic: str, payload: Any) -> bool:
        """:meth:`check` as a boolean (for filters that drop what fails)."""
        try:
            self.check(node, topic, payload)
        except ContractError:
            return False
        return True

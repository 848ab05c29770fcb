"""Parsing the public keys users register."""

from __future__ import annotations

import asyncssh
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from core.commands import CommandError

MAX_KEY_BYTES = 16 * 1024
MIN_RSA_BITS = 2048  # what NIST and OpenSSH (since 8.8's defaults) consider the floor for RSA


def parse_public_key(data: bytes) -> tuple[str, str]:
    """Return (the key in OpenSSH one-line form, its SHA256 fingerprint)."""
    if not data.strip():
        raise CommandError("no public key on stdin; send it there, like: ssh ... keys:add laptop < ~/.ssh/id_ed25519.pub")
    if len(data) > MAX_KEY_BYTES:
        raise CommandError(f"the public key is larger than {MAX_KEY_BYTES} bytes; send a single public key.")
    if b"PRIVATE KEY" in data:
        raise CommandError("that is a private key; never share it: send the public key (the .pub file) instead.")
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise CommandError("stdin is not a public key (it has binary bytes); send the .pub file of your key.") from None
    if len(text.splitlines()) != 1:
        raise CommandError("send exactly one public key, on one line.")
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError):
        raise CommandError("stdin is not an OpenSSH public key; send the .pub file of your key (ssh-ed25519 AAAA...).") from None
    if too_weak(key):
        raise CommandError(f"this RSA key has {rsa_bits(key)} bits, fewer than the {MIN_RSA_BITS} Teresa accepts; "
                           "generate a new key with: ssh-keygen -t ed25519")
    return key.export_public_key("openssh").decode().strip(), key.get_fingerprint("sha256")


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


def rsa_bits(key: asyncssh.SSHKey) -> int | None:
    rsa = key.pyca_key
    if key.algorithm != b"ssh-rsa" or not isinstance(rsa, (RSAPublicKey, RSAPrivateKey)):
        return None
    return rsa.key_size


def too_weak(key: asyncssh.SSHKey) -> bool:
    """An RSA key under MIN_RSA_BITS: refused when registered, and at login if one was registered before."""
    bits = rsa_bits(key)
    return bits is not None and bits < MIN_RSA_BITS

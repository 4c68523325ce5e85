# SPDX-License-Identifier: GPL-3.0-or-later
"""The server's TLS context, from the ``tls_cert`` and ``tls_key`` settings, with errors that
name the file and what to do.

Policy: TLS 1.2 or 1.3; on TLS 1.2 only suites with forward secrecy (ECDHE) and
authenticated encryption (AES-GCM, ChaCha20-Poly1305): no RSA key exchange, no CBC, no SHA-1
MAC. TLS 1.3's suites are all of that kind. Every browser and client of the last ten years
has such a suite."""

from __future__ import annotations

import logging
import ssl

from gr_argos.key_files import warn_if_readable_by_others
from gr_argos.server.config import ServerConfig, ServerError

__all__ = ["TLS12_CIPHERS", "tls_context"]

#: The TLS 1.2 suites offered (OpenSSL cipher list): forward secrecy and AEAD only.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

log = logging.getLogger(__name__)


def tls_context(config: ServerConfig) -> ssl.SSLContext:
    """The server's TLS context (TLS 1.2 or newer) from ``tls_cert`` and ``tls_key``.

    Raises:
        ServerError: a setting is empty, a file is missing or unreadable, is not PEM, the
            key is encrypted, or the key does not match the certificate. The message names
            the file.
    """
    if not config.tls_cert or not config.tls_key:
        missing = "tls_key" if config.tls_cert else "tls_cert"
        raise ServerError(f"TLS needs both tls_cert and tls_key: {missing} is empty")
    for setting, path, marker in (("tls_cert", config.tls_cert, b"-----BEGIN CERTIFICATE"),
                                  ("tls_key", config.tls_key, b"PRIVATE KEY-----")):
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as exc:
            raise ServerError(f"cannot read {setting} file {path}: "
                              f"{exc.strerror or exc}") from exc
        if marker not in data:
            what = "certificate" if setting == "tls_cert" else "private key"
            raise ServerError(f"{setting} file {path} holds no PEM {what}")
    warn_if_readable_by_others(config.tls_key, "tls_key_readable", "the TLS private key", log)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key, password=_no_password)
    except ServerError:
        raise ServerError(f"tls_key file {config.tls_key} is encrypted: give the server an "
                          "unencrypted key (readable only by its user)") from None
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise ServerError(f"tls_key file {config.tls_key} does not match the certificate "
                              f"in tls_cert file {config.tls_cert}") from exc
        raise ServerError(f"cannot load TLS certificate {config.tls_cert} with key "
                          f"{config.tls_key}: {exc}") from exc
    return context


def _no_password() -> bytes:
    raise ServerError("key is encrypted")

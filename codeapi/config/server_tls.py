"""The guide's SSL_CERT_FILE is the server's own certificate; to TLS clients the same name means a CA bundle.

uvicorn serves the file SSL_CERT_FILE names (with SSL_KEY_FILE, and SSL_CA_CERTS as its optional CA
bundle). OpenSSL, Python's ``ssl`` and rustls (obstore, the S3 client) read SSL_CERT_FILE and
SSL_CERT_DIR from the environment as the only CAs that *outbound* TLS trusts. Left there, S3 over
HTTPS, Redis over TLS and every process the API starts would trust nothing but the server's own
certificate; and when the file is missing (docker compose passes ``.env`` as the environment) rustls
has no roots at all: obstore failed with "No CA certificates were loaded from the system".

So a process takes both names out of its environment once it has read its settings, and its TLS
clients and children use the system CA store. ``os.environ`` unsets them in the C environment too,
which OpenSSL and Rust's ``std::env`` read whenever they build a client.
"""

from __future__ import annotations

import os

CA_BUNDLE_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")


def withhold_from_tls_clients() -> None:
    for name in CA_BUNDLE_VARIABLES:
        os.environ.pop(name, None)

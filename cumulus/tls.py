"""TLS for the gateway's front door: a local certificate authority and the credentials both ends use.

A deployment brings its own certificates (``gateway.tls_cert_file`` / ``tls_key_file``, and
``tls_client_ca_file`` to require client certificates: mutual TLS). The local stack and
docker-compose make their own with :class:`LocalPKI`: one CA, a server certificate for the
gateway's names and a client certificate, under ``<state_dir>/tls``. `cumulus up --tls` (or
``--mtls``) creates them and leaves a ``mode`` file there, which is how later commands on the same
state dir (the demo, the CLI's clients, `cumulus status`) know to speak TLS to the stack.

Keys are ECDSA P-256 (fast handshakes, small certificates), written 0600; certificates last
:data:`VALID_DAYS` and are re-made when they are within a month of expiry or miss a name.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cumulus.apikeys import write_private

VALID_DAYS = 365
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "gateway")
MODES = ("off", "tls", "mtls")
_RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class ServerTLS:
    """What the gateway serves with; ``client_ca`` set = clients must present a certificate it signed."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            ((self.key_file.read_bytes(), self.cert_file.read_bytes()),),
            root_certificates=self.client_ca_file.read_bytes() if self.client_ca_file else None,
            require_client_auth=self.client_ca_file is not None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The same, for an HTTP server (the gateway's OpenAI door): TLS 1.2+, client certs if mutual."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            context.load_verify_locations(self.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


@dataclass(frozen=True)
class ClientTLS:
    """What a client trusts (``ca_file``) and, for mutual TLS, the certificate it presents."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        with_cert = self.cert_file is not None and self.key_file is not None
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes(),
            private_key=self.key_file.read_bytes() if with_cert and self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if with_cert and self.cert_file else None,
        )


def gateway_channel(
    target: str, tls: ClientTLS | None, options: tuple[tuple[str, object], ...] = ()
) -> grpc.aio.Channel:
    """A grpc.aio channel to the gateway: TLS with ``tls``, plaintext without."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, tls.credentials(), options=options)


class LocalPKI:
    """A CA and the gateway's and a client's certificates in one directory (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_cert = directory / "ca.pem"
        self.ca_key = directory / "ca-key.pem"
        self.server_cert = directory / "gateway.pem"
        self.server_key = directory / "gateway-key.pem"
        self.client_cert = directory / "client.pem"
        self.client_key = directory / "client-key.pem"
        self.mode_file = directory / "mode"

    # -- the stack's choice ----------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """``off`` unless `cumulus up --tls/--mtls` (or :meth:`set_mode`) chose otherwise."""
        try:
            mode = self.mode_file.read_text().strip()
        except FileNotFoundError:
            return "off"
        return mode if mode in MODES else "off"

    def set_mode(self, mode: str, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> None:
        if mode not in MODES:
            raise ValueError(f"TLS mode must be one of {MODES}, not {mode!r}")
        if mode != "off":
            self.ensure(hosts)
        write_private(self.mode_file, mode + "\n")

    def server(self) -> ServerTLS:
        return ServerTLS(self.server_cert, self.server_key, self.ca_cert if self.mode == "mtls" else None)

    def client(self) -> ClientTLS:
        return ClientTLS(self.ca_cert, self.client_cert, self.client_key)

    # -- certificates ----------------------------------------------------------------------------
    def ensure(self, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> None:
        """Create the CA once; (re)issue leaf certificates when missing, expiring or short of a name."""
        self.ensure_ca()
        if _needs_leaf(self.server_cert, hosts, self.ca_cert):
            self._issue(
                self.server_cert, self.server_key, "cumulus-gateway", hosts, ExtendedKeyUsageOID.SERVER_AUTH
            )
        if _needs_leaf(self.client_cert, (), self.ca_cert):
            self._issue(
                self.client_cert, self.client_key, "cumulus-client", (), ExtendedKeyUsageOID.CLIENT_AUTH
            )

    def ensure_ca(self) -> None:
        """Create the CA (only) when missing or expiring; a new CA drops the leaves the old one signed."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        if not (self.ca_cert.exists() and self.ca_key.exists()) or _expiring(self.ca_cert):
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cumulus local CA")])
            cert = (
                _builder(name, name, key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_key_usage(ca=True), critical=True)
                .sign(key, hashes.SHA256())
            )
            self._write(self.ca_cert, self.ca_key, cert, key)  # leaves of the old CA are re-issued

    def issue_peer(self, name: str, hosts: tuple[str, ...]) -> tuple[Path, Path]:
        """A certificate ``<name>.pem`` (and key) valid as server and as client, for a peer such as
        a Kafka broker that both serves and dials the same listener; kept while valid."""
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}-key.pem"
        if _needs_leaf(cert, hosts, self.ca_cert):
            self._issue(cert, key, name, hosts, None)
        return cert, key

    def _issue(
        self,
        cert_path: Path,
        key_path: Path,
        cn: str,
        hosts: tuple[str, ...],
        usage: x509.ObjectIdentifier | None,
    ) -> None:
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            _builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]), ca_cert.subject, key.public_key()
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
        )
        if usage is not None:  # none: valid for any use
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
            )
        self._write(cert_path, key_path, builder.sign(ca_key, hashes.SHA256()), key)

    @staticmethod
    def _write(
        cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> None:
        pem_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_private(key_path, pem_key.decode())
        write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode())


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
    )


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _expiring(path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) < _RENEW_BEFORE


def _needs_leaf(path: Path, hosts: tuple[str, ...], ca_path: Path) -> bool:
    """Whether the leaf at ``path`` must be (re)issued: missing, expiring, not signed by the CA at
    ``ca_path`` (any leaf of a renewed CA, gateway's and peers' alike), or short of a host name."""
    if not path.exists() or _expiring(path):
        return True
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_path.read_bytes()))
    except (ValueError, TypeError, InvalidSignature):
        return True
    if not hosts:
        return False
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    present = {str(n) for n in names.get_values_for_type(x509.DNSName)}
    present |= {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    return not set(hosts) <= present

"""Native TLS (issue 18 item 8): node.toml ``[tls] cert, key`` makes the node listen with
``wss://``; devices verify its certificate against ``$SONET_TLS_CA`` (a private CA made here
with ``cryptography``), and a wrong CA is one clear line. The node is a real process; the
device commands run in this process (``here``), so the environment variable is the test's."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import Processes, init_node, node_here, ok, read_texts, register, set_listen, sonet_here

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _ca(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name)).issuer_name(_name(name)).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _server_cert(directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate) -> None:
    """tls/cert.pem and tls/key.pem for localhost and 127.0.0.1, signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost")).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    tls = directory / "tls"
    tls.mkdir(mode=0o700)
    (tls / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tls / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _one_error(result, *fragments: str) -> str:  # noqa: ANN001 - a conftest Result
    assert result.rc == 1, result
    assert "Traceback" not in result.err, result.err
    [line] = result.err.splitlines()
    assert line.startswith("sonet: error: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


def test_devices_register_and_send_over_wss_and_a_wrong_ca_is_one_line(
    procs: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_key, ca_cert = _ca(tmp_path / "ca", "private-ca")
    _ca(tmp_path / "ca", "other-ca")
    data = tmp_path / "node"
    init_node(data)
    _server_cert(data, ca_key, ca_cert)
    with open(data / "node.toml", "a") as f:
        f.write('\n[tls]\ncert = "tls/cert.pem"\nkey = "tls/key.pem"\n')
    node = procs.start_node(data)
    assert node.url.startswith("wss://127.0.0.1:"), node.url

    monkeypatch.setenv("SONET_TLS_CA", str(tmp_path / "ca" / "private-ca.pem"))
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(alice, "alice@localhost", node)
    register(bob, "bob@localhost", node)
    ok(sonet_here(alice, "send", "bob@localhost", "over tls"))
    [message] = read_texts(ok(sonet_here(bob, "recv", "--json")).out)
    assert message["text"] == "over tls" and message["from"] == "alice@localhost"

    # a CA that did not sign the node's certificate: refused before anything is sent
    monkeypatch.setenv("SONET_TLS_CA", str(tmp_path / "ca" / "other-ca.pem"))
    _one_error(sonet_here(alice, "send", "bob@localhost", "not sent"), "certificate")
    _one_error(sonet_here(tmp_path / "carol", "register", "carol@localhost", "--node", node.url, "--invite", node.invite()), "certificate")
    monkeypatch.setenv("SONET_TLS_CA", str(tmp_path / "missing.pem"))
    _one_error(sonet_here(alice, "send", "bob@localhost", "not sent"), "SONET_TLS_CA", "no such file")
    monkeypatch.delenv("SONET_TLS_CA")
    _one_error(sonet_here(alice, "send", "bob@localhost", "not sent"), "certificate")  # the system's CAs do not know it
    assert node.alive()


def test_tls_settings_are_checked_at_start(tmp_path: Path) -> None:
    data = tmp_path / "node"
    init_node(data)
    config = (data / "node.toml").read_text()
    (data / "node.toml").write_text(config + '\n[tls]\ncert = "tls/cert.pem"\n')
    result = node_here("config", "check", "--data", data)
    assert result.rc == 1 and "[tls] needs both cert and key" in result.err, result
    (data / "node.toml").write_text(config + '\n[tls]\ncert = "tls/cert.pem"\nkey = "tls/key.pem"\n')
    result = node_here("run", "--data", data)
    assert result.rc == 1 and result.out == "", result
    [line] = result.err.splitlines()
    assert line.startswith("sonet-node: error: ") and "tls/cert.pem: no such file" in line, line


def test_a_peer_dials_a_wss_node_and_federation_flows_both_ways(
    procs: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """beta pins alpha at its wss:// URL and verifies alpha's certificate with SONET_TLS_CA in
    its own environment; alpha dials beta over plain ws:// (no [tls] there)."""
    ca_key, ca_cert = _ca(tmp_path / "ca", "private-ca")
    monkeypatch.setenv("SONET_TLS_CA", str(tmp_path / "ca" / "private-ca.pem"))  # nodes started now inherit it
    nodes = {}
    for name in ("alpha", "beta"):
        data = tmp_path / name
        init_node(data, name=name)
        with open(data / "node.toml", "a") as f:
            f.write("\n[federation]\nretry_max_s = 1.0\nrequest_timeout_s = 3.0\n")
            if name == "alpha":
                _server_cert(data, ca_key, ca_cert)
                f.write('\n[tls]\ncert = "tls/cert.pem"\nkey = "tls/key.pem"\n')
        nodes[name] = procs.start_node(data)
        set_listen(data, f"127.0.0.1:{nodes[name].port}")
    alpha, beta = nodes["alpha"], nodes["beta"]
    assert alpha.url.startswith("wss://") and beta.url.startswith("ws://")
    for node, other in ((alpha, beta), (beta, alpha)):
        ok(node_here("peer", "add", "--data", node.data, "--name", other.name, "--url", other.url, "--fingerprint", other.fingerprint))
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(alice, "alice@alpha", alpha)
    register(bob, "bob@beta", beta)

    ok(sonet_here(bob, "send", "alice@alpha", "to alpha over wss"))
    [message] = read_texts(ok(sonet_here(alice, "recv", "--wait", "30", "--json")).out)
    assert message["text"] == "to alpha over wss" and message["from"] == "bob@beta"
    ok(sonet_here(alice, "send", "bob@beta", "back over ws"))
    texts = [m["text"] for m in read_texts(ok(sonet_here(bob, "recv", "--wait", "30", "--json")).out)]
    assert "back over ws" in texts

"""The outbound client: SSRF guard (every resolved address checked, allow-list), no redirects, timeouts."""

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest
import requests

from integrations import outbound


@pytest.fixture
def redirecting_server():
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/",
        "http://localhost:9/",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://0.0.0.0:9/",
        "http://100.64.0.1/",
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused(settings, url):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = []
    with pytest.raises(outbound.OutboundRefused):
        outbound.post(url, data=b"{}")


def test_a_host_is_refused_if_any_of_its_addresses_is_private(settings, monkeypatch):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(outbound.OutboundRefused, match=r"10\.0\.0\.7"):
        outbound.post("https://api.example.test/v1/batch", data=b"{}")


def test_the_connected_address_is_checked_too(settings, monkeypatch, redirecting_server):
    """A DNS answer that changes between the check and the connection cannot reach a private address."""
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = []
    monkeypatch.setattr(outbound, "check_host", lambda host, port: None)  # pretend the check passed
    with pytest.raises(outbound.OutboundRefused, match="connected to a private"):
        outbound.post(redirecting_server, data=b"{}")


def test_the_allow_list_permits_loopback_and_redirects_are_not_followed(settings, redirecting_server):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    response = outbound.post(redirecting_server, data=b"{}", timeout=2)
    assert response.status_code == 302  # returned as is, the metadata address never requested


def test_only_http_urls_without_credentials(settings):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    for url in ["file:///etc/passwd", "ftp://127.0.0.1/", "http://user:pw@127.0.0.1/", "http:///nohost"]:
        with pytest.raises(outbound.OutboundRefused):
            outbound.post(url, data=b"{}")


def test_every_call_has_a_timeout(settings):
    settings.HUB_OUTBOUND_ALLOW_NETWORKS = ["127.0.0.0/8"]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        with pytest.raises(requests.Timeout):
            outbound.post(f"http://127.0.0.1:{listener.getsockname()[1]}/", data=b"{}", timeout=0.5)
    finally:
        listener.close()

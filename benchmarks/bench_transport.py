"""Transport speed: a signed E*TRADE-style GET per client, over loopback HTTPS.

    python -m pip install ".[bench]"
    python benchmarks/bench_transport.py              # about two minutes
    python benchmarks/bench_transport.py --calls 50   # a smoke run

A server process (HTTP/1.1 keep-alive, TLS with a test CA made here with the
`openssl` command) checks every request's signature with verify_request and
answers a small JSON body. The same process runs a TCP proxy that holds each
chunk 15 ms in each direction: 30 ms of round-trip time, as from a desk to
E*TRADE. TLS runs end to end through the proxy.

Clients, each with one long-lived session and the test CA as its trust:
    oauth1_etrade   ETradeSession.get
    requests        requests.Session + requests_oauthlib.OAuth1
    httpx           httpx.Client + oauth1_etrade.OAuth1Auth
    http.client     one kept-alive http.client.HTTPSConnection + sign_request (the floor)

Each client makes --calls sequential signed GETs, interleaved with the others
in rounds of 10 calls in a freshly shuffled order, so that drift of the machine
hits all of them alike. Reported: the median ms per call, the ratio to requests,
and the TCP connections (= TLS handshakes) the server saw from each client.

Targets (issue 10): oauth1_etrade <= 1.0x requests on loopback and <= 1.05x
through the 30 ms proxy, with 1 TLS handshake for the whole run (one thread).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import json
import pathlib
import platform
import queue
import random
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import oauth1_etrade as oa  # noqa: E402

CONSUMER_KEY = "282683cc9e4b8fc81dea6bc687d46758"
CONSUMER_SECRET = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
TOKEN = "/iQRgQCRGPo7Xdk6G8QDSEzX0Jsy6sKNcULcDavAGgU="
TOKEN_SECRET = "Nd8c+2kQ/p3mX9sVbW1zYq=="
PATH = "/v1/market/quote/GOOG,AAPL.json"
PARAMS = {"detailFlag": "ALL", "note": "a b,c:d"}
DELAY = 0.015  # each direction: 30 ms round trip


# ---- certificates ----


def make_test_ca(folder: pathlib.Path) -> None:
    """Write ca.pem and server.pem/server.key (for 127.0.0.1) into folder, with openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=bench CA", "-days", "2",
            "-keyout", "ca.key", "-out", "ca.pem",
            # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a CA needs these
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")
    (folder / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.pem")


# ---- the server process: a verifying HTTPS server and the delaying proxy ----


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY the second
    # waits for the client's delayed ACK (40 ms) and every client measures that.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.client_name: str | None = None

    def do_GET(self) -> None:  # noqa: N802
        stats = self.server.stats  # type: ignore[attr-defined]
        if self.path == "/__stats":
            self.answer(200, json.dumps(stats).encode())
            return
        if self.client_name is None:  # the connection's first request names its client
            self.client_name = self.headers.get("X-Bench-Client", "?")
            stats["connections"][self.client_name] = stats["connections"].get(self.client_name, 0) + 1
        url = f"https://{self.headers['Host']}{self.path}"
        good = oa.verify_request(
            "GET", url, self.headers.get("Authorization", ""),
            consumer_secret=CONSUMER_SECRET, token_secret=TOKEN_SECRET,
        )  # fmt: skip
        stats["verified" if good else "refused"] += 1
        if good:
            self.answer(200, b'{"QuoteResponse": {"QuoteData": []}}')
        else:
            self.answer(401, b"oauth_problem=signature_invalid")

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes from source to target, each chunk delivered DELAY seconds after it arrived."""
    pending: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def deliver() -> None:
        while True:
            due, chunk = pending.get()
            if not chunk:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                return
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                target.sendall(chunk)
            except OSError:
                return

    threading.Thread(target=deliver, daemon=True).start()
    while True:
        try:
            chunk = source.recv(65536)
        except OSError:
            chunk = b""
        pending.put((time.monotonic() + DELAY, chunk))
        if not chunk:
            return


def proxy(listener: socket.socket, upstream_port: int) -> None:
    while True:
        client, _ = listener.accept()
        upstream = socket.create_connection(("127.0.0.1", upstream_port))
        for a, b in ((client, upstream), (upstream, client)):
            a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


def serve(folder: pathlib.Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(folder / "server.pem"), str(folder / "server.key"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.stats = {"connections": {}, "verified": 0, "refused": 0}  # type: ignore[attr-defined]
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=proxy, args=(listener, server.server_address[1]), daemon=True).start()
    print(server.server_address[1], listener.getsockname()[1], flush=True)
    server.serve_forever()


# ---- the clients ----


def client_oauth1_etrade(base: str, context: ssl.SSLContext, ca: str):
    # pace=False: this measures the transport; E*TRADE's rate limits would hold the
    # market module to 4 calls a second (the other clients know no limits).
    session = oa.ETradeSession(
        CONSUMER_KEY, CONSUMER_SECRET, token=TOKEN, token_secret=TOKEN_SECRET, api_base=base,
        ssl_context=context, pace=False,
    )  # fmt: skip
    headers = {"X-Bench-Client": "oauth1_etrade"}
    return lambda: session.get(PATH, params=PARAMS, headers=headers).body


def client_requests(base: str, context: ssl.SSLContext, ca: str):
    import requests
    from requests_oauthlib import OAuth1

    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE in the environment overrides verify
    session.verify = ca
    session.auth = OAuth1(CONSUMER_KEY, CONSUMER_SECRET, TOKEN, TOKEN_SECRET)
    session.headers["X-Bench-Client"] = "requests"

    def call() -> bytes:
        response = session.get(base + PATH, params=PARAMS)
        response.raise_for_status()
        return response.content

    return call


def client_httpx(base: str, context: ssl.SSLContext, ca: str):
    import httpx

    client = httpx.Client(verify=context, headers={"X-Bench-Client": "httpx"})
    auth = oa.OAuth1Auth(CONSUMER_KEY, CONSUMER_SECRET, TOKEN, TOKEN_SECRET)

    def call() -> bytes:
        response = client.get(base + PATH, params=PARAMS, auth=auth)
        response.raise_for_status()
        return response.content

    return call


def client_http_client(base: str, context: ssl.SSLContext, ca: str):
    from urllib.parse import urlencode, urlsplit

    port = urlsplit(base).port
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)
    url = base + PATH + "?" + urlencode(PARAMS, quote_via=lambda s, *a: oa.percent_encode(s))
    target = url[len(base):]

    def call() -> bytes:
        header = oa.sign_request("GET", url, consumer_key=CONSUMER_KEY, consumer_secret=CONSUMER_SECRET,
                                 token=TOKEN, token_secret=TOKEN_SECRET)
        connection.request("GET", target, headers={"Authorization": header, "X-Bench-Client": "http.client"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"http.client: {response.status}")
        return body

    return call


CLIENTS = {
    "oauth1_etrade": client_oauth1_etrade,
    "requests": client_requests,
    "httpx": client_httpx,
    "http.client": client_http_client,
}


def stats(port: int, context: ssl.SSLContext) -> dict:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    connection.request("GET", "/__stats")
    data = json.loads(connection.getresponse().read())
    connection.close()
    return data


def run(label: str, port: int, server_port: int, folder: pathlib.Path, calls: int) -> dict[str, float]:
    ca = str(folder / "ca.pem")
    context = ssl.create_default_context(cafile=ca)
    base = f"https://127.0.0.1:{port}"
    before = stats(server_port, context)
    clients = {name: make(base, context, ca) for name, make in CLIENTS.items()}
    for call in clients.values():
        call()  # warm: connect, handshake, first imports
    times: dict[str, list[float]] = {name: [] for name in clients}
    rounds, batch = divmod(calls, 10)
    for _ in range(rounds):
        order = list(clients)
        random.shuffle(order)
        for name in order:
            call = clients[name]
            for _ in range(10):
                started = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - started)
    after = stats(server_port, context)
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"\n{label}: {rounds * 10} sequential signed GETs per client, interleaved")
    for name, median in medians.items():
        ratio = median / medians["requests"]
        handshakes = after["connections"].get(name, 0) - before["connections"].get(name, 0)
        print(f"  {name:<14} {median:8.3f} ms/call   {ratio:5.2f}x requests   "
              f"TCP/TLS handshakes for the whole run: {handshakes}")
    verified, refused = (after[k] - before[k] for k in ("verified", "refused"))
    print(f"  signatures verified by the server: {verified}, refused: {refused}")
    medians["handshakes"] = after["connections"].get("oauth1_etrade", 0) - before["connections"].get(
        "oauth1_etrade", 0
    )
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="signed GETs per client and setting")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(pathlib.Path(args.serve))
        return 0
    import httpx
    import requests
    import requests_oauthlib

    with tempfile.TemporaryDirectory() as name:
        folder = pathlib.Path(name)
        make_test_ca(folder)
        command = [sys.executable, __file__, "--serve", name]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            server_port, proxy_port = map(int, server.stdout.readline().split())
            python = f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}"
            print(f"Python {python}; "
                  f"oauth1_etrade {oa.__version__}, requests {requests.__version__}, "
                  f"requests-oauthlib {requests_oauthlib.__version__}, httpx {httpx.__version__}; "
                  f"{ssl.OPENSSL_VERSION}")
            loopback = run("loopback HTTPS", server_port, server_port, folder, args.calls)
            proxied = run("through a proxy adding 30 ms of round-trip time", proxy_port, server_port, folder,
                          args.calls)
        finally:
            server.terminate()
            server.wait()
    checks = [
        ("oauth1_etrade <= 1.0x requests on loopback", loopback["oauth1_etrade"] <= loopback["requests"]),
        ("oauth1_etrade <= 1.05x requests through the 30 ms proxy",
         proxied["oauth1_etrade"] <= 1.05 * proxied["requests"]),
        ("1 TLS handshake for the whole run, loopback and proxy",
         loopback["handshakes"] == 1 and proxied["handshakes"] == 1),
    ]
    print("\ntargets:")
    for text, met in checks:
        print(f"  {'met  ' if met else 'MISSED'} {text}")
    return 0 if all(met for _, met in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

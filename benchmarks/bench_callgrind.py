"""Signing cost in CPU instructions, counted by valgrind's callgrind: repeatable on a busy machine.

    python -m pip install ".[bench]"
    python benchmarks/bench_callgrind.py            # about a minute
    python benchmarks/bench_callgrind.py --calls 200

Each signer runs in its own interpreter under `valgrind --tool=callgrind`, once
with --calls signatures and once with none, after the same warm-up; the
difference divided by --calls is the instructions per call, with the start-up
of Python and of the imports cancelled out. The request is benchmarks/bench_sign.py's
E*TRADE GET with a fixed nonce and timestamp, so every signer computes the same
signature (checked before counting).

Signers: oauth1_etrade.sign_request; the naive 30-line signer of bench_sign.py
(quote, sort, join, HMAC, base64); a lean straight-line signer of this one
request with no checks (a reference for how low any signer can go on this
Python); the HMAC-SHA1 + base64 floor.

Target (issue 13): sign_request <= 0.20x the naive signer. Read it beside the
lean row: on CPython 3.11 that reference, which checks nothing, counts about
0.19x itself.
"""

from __future__ import annotations

import argparse
import binascii
import hmac
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

URL = "https://api.etrade.com/v1/accounts/list.json"
WARM_UP = 50


UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


def lean_sign(method: str, url: str) -> str:
    """A reference, not a signer to use: this one request signed in straight-line code
    with no checks, knowing which values need no encoding; how low a count can go here."""
    import bench_sign

    def encode(value: str) -> str:
        if not value.encode().translate(None, UNRESERVED):
            return value
        return value.replace("%", "%25").replace("/", "%2F").replace("+", "%2B").replace("=", "%3D").replace(
            ":", "%3A"
        )

    scheme, _, rest = url.partition("://")
    uri = f"{scheme.lower()}://{rest.partition('?')[0]}"
    params = [
        ("oauth_consumer_key", bench_sign.CONSUMER_KEY), ("oauth_nonce", bench_sign.NONCE),
        ("oauth_signature_method", "HMAC-SHA1"), ("oauth_timestamp", bench_sign.TIMESTAMP),
        ("oauth_token", encode(bench_sign.TOKEN)), ("oauth_version", "1.0"),
    ]  # fmt: skip
    normalized = "&".join(map("=".join, params))
    base = f"{method}&{encode(uri)}&{normalized.replace('%', '%25').replace('=', '%3D').replace('&', '%26')}"
    key = f"{bench_sign.CONSUMER_SECRET}&{encode(bench_sign.TOKEN_SECRET)}"
    digest = hmac.digest(key.encode(), base.encode(), "sha1")
    params.append(("oauth_signature", encode(binascii.b2a_base64(digest, newline=False).decode())))
    return "OAuth " + ",".join(map('{0[0]}="{0[1]}"'.format, params))


def signers() -> dict:
    import bench_sign  # the signers and credentials of the wall-clock benchmark

    import oauth1_etrade as oa

    # The floor: the one-shot HMAC-SHA1 of the finished base string, and base64.
    secrets = (bench_sign.CONSUMER_SECRET, bench_sign.TOKEN_SECRET)
    key = "&".join(map(oa.percent_encode, secrets)).encode()
    params = [(n, v) for n, v in oa.parse_authorization_header(bench_sign.ours("GET", URL)).items()]
    base = oa.signature_base_string("GET", URL, [p for p in params if p[0] != "oauth_signature"]).encode()
    return {
        "oauth1_etrade": lambda: bench_sign.ours("GET", URL),
        "naive": lambda: bench_sign.naive_sign("GET", URL),
        "lean, no checks": lambda: lean_sign("GET", URL),
        "HMAC+base64 floor": lambda: binascii.b2a_base64(hmac.digest(key, base, "sha1"), newline=False),
    }


def child(name: str, calls: int) -> None:
    sign = signers()[name]
    for _ in range(WARM_UP):
        sign()
    for _ in range(calls):
        sign()


def instructions(name: str, calls: int) -> int:
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--child", name, "--calls", str(calls),
    ]  # fmt: skip
    # A fixed hash seed: string hashing, and so dict and set work, the same in every run.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return int(re.search(r"Collected : (\d+)", done.stderr).group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.calls)
        return 0
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    import bench_sign

    import oauth1_etrade as oa

    headers = {name: sign() for name, sign in signers().items() if "floor" not in name}
    signatures = {bench_sign.signature_of(header) for header in headers.values()}
    assert len(signatures) == 1, headers
    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"Python {python}; oauth1_etrade {oa.__version__}")
    print(f"E*TRADE GET {URL}, fixed nonce and timestamp; all signers give {signatures.pop()}")
    per_call = {}
    for name in signers():
        per_call[name] = (instructions(name, args.calls) - instructions(name, 0)) / args.calls
    naive = per_call["naive"]
    for name, count in per_call.items():
        print(f"  {name:<18} {count:>10,.0f} instructions per call   {count / naive:5.3f}x naive")
    ratio = per_call["oauth1_etrade"] / naive
    print(f"\ntarget: {'met  ' if ratio <= 0.20 else 'MISSED'} sign_request <= 0.20x naive ({ratio:.3f})")
    return 0 if ratio <= 0.20 else 1


if __name__ == "__main__":
    sys.exit(main())

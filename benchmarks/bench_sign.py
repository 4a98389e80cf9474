"""Signing speed: oauth1_etrade.sign_request against oauthlib, Authlib and a naive signer.

    python -m pip install ".[bench]"
    python benchmarks/bench_sign.py            # about a minute
    python benchmarks/bench_sign.py --quick    # a smoke run

Everything is timed in ONE process: each repeat runs every signer once on a batch
of calls, in a freshly shuffled order, so that drift of the machine hits all of
them alike. Reported: the median µs per call over repeats, and each ratio as the
median of the per-repeat ratios. Before timing, every signer must produce the
same signature for the same request (fixed nonce and timestamp, which all signers
are also timed with).

Also reported: the cost per query parameter for 1 to 10,000 parameters, and the
import time of oauth1_etrade against oauthlib.oauth1 (-X importtime, fresh
processes, medians).

Targets (issue 7): E*TRADE GET <= 0.25x oauthlib and <= 0.8x naive;
20-parameter GET and 200-field POST <= 0.35x oauthlib; per-parameter cost flat
within 20 % from 100 to 10,000; import <= 1/3 of oauthlib.oauth1.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import pathlib
import platform
import random
import statistics
import subprocess
import sys
import time
from urllib.parse import parse_qsl, quote, unquote, urlsplit

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from authlib.oauth1.rfc5849 import client_auth as authlib_client_auth  # noqa: E402
from oauthlib.oauth1 import Client as OAuthlibClient  # noqa: E402

import oauth1_etrade as oa  # noqa: E402

NONCE = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"
TIMESTAMP = "1318622958"
CONSUMER_KEY = "282683cc9e4b8fc81dea6bc687d46758"
CONSUMER_SECRET = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
TOKEN = "/iQRgQCRGPo7Xdk6G8QDSEzX0Jsy6sKNcULcDavAGgU="
TOKEN_SECRET = "Nd8c+2kQ/p3mX9sVbW1zYq=="
FORM = "application/x-www-form-urlencoded"


# ---- the naive signer: what a user writes in 30 lines ----


def naive_sign(method, url, body=None):
    """Sign the obvious way: quote(safe="~") every value, sort, join, HMAC, base64."""

    def q(s):
        return quote(s, safe="~")

    parts = urlsplit(url)
    base_url = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path or '/'}"
    oauth = {
        "oauth_consumer_key": CONSUMER_KEY,
        "oauth_nonce": NONCE,
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": TIMESTAMP,
        "oauth_token": TOKEN,
        "oauth_version": "1.0",
    }
    params = list(oauth.items()) + parse_qsl(parts.query, keep_blank_values=True)
    if body:
        params += parse_qsl(body, keep_blank_values=True)
    pairs = sorted((q(k), q(v)) for k, v in params)
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    base_string = "&".join([method.upper(), q(base_url), q(normalized)])
    key = f"{q(CONSUMER_SECRET)}&{q(TOKEN_SECRET)}"
    digest = hmac.new(key.encode(), base_string.encode(), hashlib.sha1).digest()
    oauth["oauth_signature"] = base64.b64encode(digest).decode()
    return "OAuth " + ", ".join(f'{q(k)}="{q(v)}"' for k, v in oauth.items())


# ---- the signers under test, each (method, url, body) -> Authorization ----


def ours(method, url, body=None):
    return oa.sign_request(
        method,
        url,
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
        token=TOKEN,
        token_secret=TOKEN_SECRET,
        body=body,
        content_type=FORM if body else None,
        nonce=NONCE,
        timestamp=TIMESTAMP,
    )


OAUTHLIB = OAuthlibClient(
    CONSUMER_KEY,
    client_secret=CONSUMER_SECRET,
    resource_owner_key=TOKEN,
    resource_owner_secret=TOKEN_SECRET,
    nonce=NONCE,
    timestamp=TIMESTAMP,
)


def oauthlib_sign(method, url, body=None):
    headers = {"Content-Type": FORM} if body else {}
    return OAUTHLIB.sign(url, method, body, headers)[1]["Authorization"]


# Authlib draws its nonce and timestamp inside sign(); fix them for the comparison.
authlib_client_auth.generate_nonce = lambda: NONCE
authlib_client_auth.generate_timestamp = lambda: TIMESTAMP
AUTHLIB = authlib_client_auth.ClientAuth(
    CONSUMER_KEY, client_secret=CONSUMER_SECRET, token=TOKEN, token_secret=TOKEN_SECRET
)


def authlib_sign(method, url, body=None):
    headers = {"Content-Type": FORM} if body else {}
    return AUTHLIB.sign(method, url, headers, body)[1]["Authorization"]


def floor_for(method, url, body=None):
    """Return a signer doing only the HMAC-SHA1 and base64 of this request's base string."""
    params = [
        ("oauth_consumer_key", CONSUMER_KEY),
        ("oauth_nonce", NONCE),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", TIMESTAMP),
        ("oauth_token", TOKEN),
        ("oauth_version", "1.0"),
    ]
    if body:
        params += parse_qsl(body, keep_blank_values=True)
    key = f"{oa.percent_encode(CONSUMER_SECRET)}&{oa.percent_encode(TOKEN_SECRET)}".encode()
    base_string = oa.signature_base_string(method, url, params).encode()

    def floor(method, url, body=None):
        return base64.b64encode(hmac.new(key, base_string, hashlib.sha1).digest()).decode()

    return floor


def signature_of(header):
    if "oauth_signature=" not in header:  # the floor returns the bare signature
        return header
    for field in header[len("OAuth ") :].split(","):
        name, _, value = field.strip().partition("=")
        if name == "oauth_signature":
            return unquote(value.strip('"'))
    raise AssertionError(header)


# ---- workloads ----


def workloads():
    etrade = ("GET", "https://api.etrade.com/v1/accounts/list.json", None)
    rnd = random.Random(7)
    specials = [
        "a b",
        "x+y",
        "GOOG,AAPL",
        "10:30",
        "caf\u00e9",
        "\u2603",
        "100%",
        "a&b=c",
        "~._-",
        "\u00fc\u00f1",
    ]
    query = [(f"p{i:02d}", specials[i % len(specials)] + str(rnd.randint(0, 999))) for i in range(20)]
    get20 = (
        "GET",
        "https://api.etrade.com/v1/market/quote/GOOG.json?"
        + "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in query),
        None,
    )
    fields = [(f"field{i:03d}", f"value {i} \u00e9&=+") for i in range(200)]
    post200 = (
        "POST",
        "https://api.etrade.com/v1/accounts/abc/orders/preview",
        "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in fields),
    )
    return {"E*TRADE GET": etrade, "20-param GET": get20, "200-field POST": post200}


# ---- timing ----


def batch_size(fn, args, target=0.004):
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn(*args)
        if time.perf_counter() - start >= target:
            return n
        n *= 2


def time_batch(fn, args, n):
    start = time.perf_counter()
    for _ in range(n):
        fn(*args)
    return (time.perf_counter() - start) / n


def compare(name, args, repeats):
    signers = {
        "oauth1_etrade": ours,
        "oauthlib": oauthlib_sign,
        "Authlib": authlib_sign,
        "naive": naive_sign,
        "HMAC+base64 floor": floor_for(*args),
    }
    signatures = {label: signature_of(fn(*args)) for label, fn in signers.items()}
    if len(set(signatures.values())) != 1:
        raise SystemExit(f"{name}: signers disagree: {signatures}")
    sizes = {label: batch_size(fn, args) for label, fn in signers.items()}
    samples = {label: [] for label in signers}
    order = list(signers)
    rnd = random.Random(1)
    for _ in range(repeats):
        rnd.shuffle(order)
        for label in order:
            samples[label].append(time_batch(signers[label], args, sizes[label]))
    print(
        f"\n{name}: {args[0]} {args[1][:70]}{'...' if len(args[1]) > 70 else ''}"
        f"{f' + {len(args[2])}-byte form body' if args[2] else ''}"
    )
    print(f"  all 5 signers give {signatures['oauth1_etrade']}")
    ours_times = samples["oauth1_etrade"]
    for label, times in samples.items():
        ratio = statistics.median(o / t for o, t in zip(ours_times, times))
        ratio_text = "" if label == "oauth1_etrade" else f"   oauth1_etrade / {label} = {ratio:.3f}"
        print(f"  {label:<18} {statistics.median(times) * 1e6:9.2f} µs{ratio_text}")
    return {
        label: statistics.median(o / t for o, t in zip(ours_times, times)) for label, times in samples.items()
    }


def per_parameter(repeats):
    """Print the cost per query parameter; return the max/min spread from 100 to 10,000.

    The cost per parameter is (t(n) - t(0)) / n: what n parameters add to
    signing the same request with none. Dividing the total by n instead would
    charge the fixed ~40 µs to the parameters and make small n look dearer;
    both columns are printed. Sizes are interleaved in shuffled order within
    each repeat, like the signers above, so that drift hits all of them alike;
    each batch follows one untimed call, so every size is timed warm.
    """
    print("\ncost per query parameter (GET, n parameters; per param = (t(n) - t(0)) / n):")
    base_url = "https://api.etrade.com/v1/x"
    sizes = [0, 1, 10, 100, 1000, 10000]
    args = {
        n: ("GET", base_url + ("?" + "&".join(f"k{i}=v%20{i}" for i in range(n)) if n else ""), None)
        for n in sizes
    }
    batch = {n: batch_size(ours, args[n], target=0.02) for n in sizes}
    samples = {n: [] for n in sizes}
    rnd = random.Random(2)
    order = list(sizes)
    for _ in range(max(7, repeats // 3)):
        rnd.shuffle(order)
        for n in order:
            ours(*args[n])  # one untimed call first: a 10,000-parameter batch is only a few calls
            samples[n].append(time_batch(ours, args[n], batch[n]))
    totals = {n: statistics.median(samples[n]) for n in sizes}
    print(f"  n=0      {totals[0] * 1e6:11.1f} µs total")
    costs = {}
    for n in sizes[1:]:
        costs[n] = (totals[n] - totals[0]) / n
        print(
            f"  n={n:<6} {totals[n] * 1e6:11.1f} µs total  {totals[n] / n * 1e6:8.3f} µs total/n"
            f"  {costs[n] * 1e6:7.3f} µs/param"
        )
    flat = max(costs[n] for n in (100, 1000, 10000)) / min(costs[n] for n in (100, 1000, 10000))
    print(f"  spread of µs/param from 100 to 10,000: max/min = {flat:.3f}")
    return flat


def import_time(statement, module, runs):
    """Median cumulative -X importtime of ``module`` in fresh processes, in ms.

    Bytecode caching is allowed (PYTHONDONTWRITEBYTECODE removed) and one
    warm-up run writes it: installed packages ship their .pyc, so this compares
    like with like.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    values = []
    for run in range(runs + 1):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
            env=env,
        ).stderr
        if run == 0:
            continue
        for line in out.splitlines():
            fields = [f.strip() for f in line.split("|")]
            if len(fields) == 3 and fields[2] == module:
                values.append(int(fields[1]) / 1000)
    return statistics.median(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, for a smoke run")
    args = parser.parse_args()
    repeats = 15 if args.quick else 150
    print(
        f"Python {platform.python_implementation()} {platform.python_version()} on {platform.machine()}; "
        f"oauth1_etrade {oa.__version__}, oauthlib {__import__('oauthlib').__version__}, "
        f"Authlib {__import__('authlib').__version__}; {repeats} repeats"
    )
    ratios = {name: compare(name, wl, repeats) for name, wl in workloads().items()}
    flat = per_parameter(repeats)
    runs = 5 if args.quick else 21
    ours_ms = import_time("import oauth1_etrade", "oauth1_etrade", runs)
    theirs_ms = import_time("import oauthlib.oauth1", "oauthlib.oauth1", runs)
    print(f"\nimport time (median of {runs} fresh processes, -X importtime cumulative):")
    print(
        f"  oauth1_etrade {ours_ms:6.2f} ms   oauthlib.oauth1 {theirs_ms:6.2f} ms"
        f"   ratio {ours_ms / theirs_ms:.3f}"
    )

    checks = [
        ("E*TRADE GET <= 0.25x oauthlib", ratios["E*TRADE GET"]["oauthlib"] <= 0.25),
        ("E*TRADE GET <= 0.8x naive", ratios["E*TRADE GET"]["naive"] <= 0.8),
        ("20-param GET <= 0.35x oauthlib", ratios["20-param GET"]["oauthlib"] <= 0.35),
        ("200-field POST <= 0.35x oauthlib", ratios["200-field POST"]["oauthlib"] <= 0.35),
        ("per-parameter cost flat within 20 % (100..10,000)", flat <= 1.2),
        ("import <= 1/3 of oauthlib.oauth1", ours_ms <= theirs_ms / 3),
    ]
    print("\ntargets:")
    for label, ok in checks:
        print(f"  {'met ' if ok else 'MISS'}  {label}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

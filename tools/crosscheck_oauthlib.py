"""Cross-check vectors/ against oauthlib, a second implementation (never a dependency).

Run it once in a throwaway virtualenv:

    python -m venv /tmp/xv && /tmp/xv/bin/pip install oauthlib==3.3.1
    /tmp/xv/bin/python tools/crosscheck_oauthlib.py

For every vector case it computes oauthlib's answer and prints one line per case
where oauthlib disagrees, then a summary. Disagreements are expected only where
oauthlib is laxer or stricter than RFC 5849 says; each is listed for review.
"""

from __future__ import annotations

import json
import pathlib
import sys
from urllib.parse import unquote, urlsplit

from oauthlib.oauth1 import Client
from oauthlib.oauth1.rfc5849 import parameters, signature, utils

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "vectors"


def pairs(raw):
    return [tuple(p) for p in raw]


def query_params(url):
    return signature.collect_parameters(uri_query=urlsplit(url).query)


def oauthlib_answer(name, inp):
    if name == "percent_encode":
        if "bytes_hex" in inp:
            raise NotImplementedError("oauthlib escapes text only")
        return utils.escape(inp["value"])
    if name == "base_string_uri":
        return signature.base_string_uri(inp["url"])
    if name == "normalize_parameters":
        return signature.normalize_parameters(pairs(inp["params"]))
    if name == "signature_base_string":
        params = [p for p in pairs(inp["params"]) if p[0] not in ("realm", "oauth_signature")]
        normalized = signature.normalize_parameters(params + query_params(inp["url"]))
        return signature.signature_base_string(
            inp["method"].upper(), signature.base_string_uri(inp["url"]), normalized
        )
    if name == "signature":
        method = inp["signature_method"]
        args = (inp["base_string"], inp["consumer_secret"], inp["token_secret"])
        if method == "HMAC-SHA1":
            return signature.sign_hmac_sha1(*args)
        if method == "HMAC-SHA256":
            return signature.sign_hmac_sha256(*args)
        if method == "PLAINTEXT":
            return signature.sign_plaintext(inp["consumer_secret"], inp["token_secret"])
        raise ValueError(method)
    if name == "sign_request":
        opts = inp["options"]
        body = opts.get("body")
        headers = {}
        if isinstance(body, list):
            body = pairs(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif opts.get("content_type"):
            headers["Content-Type"] = opts["content_type"]
        client = Client(
            opts["consumer_key"],
            client_secret=opts["consumer_secret"],
            resource_owner_key=opts.get("token"),
            resource_owner_secret=opts.get("token_secret"),
            callback_uri=opts.get("callback"),
            verifier=opts.get("verifier"),
            signature_method=opts.get("signature_method", "HMAC-SHA1"),
            nonce=opts["nonce"],
            timestamp=opts["timestamp"],
        )
        _, signed, _ = client.sign(inp["url"], inp["method"], body, headers)
        params = dict(utils.parse_authorization_header(signed["Authorization"]))
        return {"oauth_signature": unquote(params["oauth_signature"])}
    if name == "authorization_header":
        built = parameters.prepare_headers(pairs(inp["params"]), realm=inp["realm"])["Authorization"]
        return built.replace(", ", ",")
    if name == "parse_authorization_header":
        # oauthlib leaves values percent-encoded; decode them to compare.
        parsed = dict(utils.parse_authorization_header(inp["value"]))
        return {k: v if k == "realm" else unquote(v) for k, v in parsed.items()}
    raise KeyError(name)


def expected(name, case):
    if name == "sign_request":
        return {"oauth_signature": case["expect"]["oauth_signature"]}
    return case["expect"]


def main():
    agree = differ = skipped = 0
    for path in sorted(VECTORS.glob("*.json")):
        name = path.stem
        for case in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            label = f"{name}/{case['id']}"
            try:
                got = oauthlib_answer(name, case["input"])
            except NotImplementedError as exc:
                skipped += 1
                print(f"SKIP   {label}: {exc}")
                continue
            except Exception as exc:
                got = exc
            if "error" in case:
                ok = isinstance(got, Exception)
                note = "" if ok else f"oauthlib accepts it, giving {got!r}"
            else:
                ok = not isinstance(got, Exception) and got == expected(name, case)
                note = "" if ok else f"oauthlib gives {got!r}, vector says {expected(name, case)!r}"
            if ok:
                agree += 1
            else:
                differ += 1
                print(f"DIFFER {label}: {note}")
    print(f"{agree} agree, {differ} differ, {skipped} not comparable")
    return 0


if __name__ == "__main__":
    sys.exit(main())

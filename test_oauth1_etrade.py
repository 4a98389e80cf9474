"""Tests for oauth1_etrade, in the module's section order.

Known answers come from vectors/*.json (each case names its source); hypothesis
properties check every rule on arbitrary input.
"""

from __future__ import annotations

import json
import pathlib
import string
import subprocess
import sys
from urllib.parse import parse_qsl, unquote, unquote_to_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oauth1_etrade as oa

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = HERE / "vectors"
ERRORS = {"ValueError": ValueError, "TypeError": TypeError}


def load_cases(name: str) -> list[dict]:
    """Return the cases of vectors/<name>.json."""
    return json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))["cases"]


def vector_cases(name: str):
    """Parametrize a test over vectors/<name>.json, ids from the cases."""
    cases = load_cases(name)
    return pytest.mark.parametrize("case", cases, ids=[c["id"] for c in cases])


def pairs(raw: list) -> list[tuple[str, str]]:
    return [(n, v) for n, v in raw]


def check(case: dict, compute) -> None:
    """Assert that compute() gives the case's expected value, or its error."""
    if "error" in case:
        with pytest.raises(ERRORS[case["error"]]):
            compute()
    else:
        assert compute() == case["expect"]


def test_vectors_are_well_formed():
    files = sorted(VECTORS.glob("*.json"))
    assert len(files) == 8
    for path in files:
        cases = load_cases(path.stem)
        assert cases, path
        assert len({c["id"] for c in cases}) == len(cases), path
        for case in cases:
            assert case["source"].strip(), case["id"]
            assert ("expect" in case) != ("error" in case), case["id"]


# Text the RFC can encode: any code point but lone surrogates.
texts = st.text(st.characters(blacklist_categories=("Cs",)))
no_ctl_texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"))
pair_lists = st.lists(st.tuples(no_ctl_texts, no_ctl_texts), max_size=12)


# ---- Constants and errors ----


def test_public_names_exist():
    for name in oa.__all__:
        assert hasattr(oa, name), name


def test_oauth_error_carries_status_and_problem():
    err = oa.OAuthError("token_rejected", status=401, problem="token_rejected")
    assert (err.status, err.problem, str(err)) == (401, "token_rejected", "token_rejected")


# ---- §3.6 Percent encoding ----


@vector_cases("percent_encode")
def test_percent_encode_vectors(case):
    inp = case["input"]
    value = bytes.fromhex(inp["bytes_hex"]) if "bytes_hex" in inp else inp["value"]
    check(case, lambda: oa.percent_encode(value))


@given(texts)
def test_percent_encode_round_trips(text):
    assert unquote(oa.percent_encode(text), errors="strict") == text


@given(st.binary())
def test_percent_encode_bytes_round_trip(data):
    assert unquote_to_bytes(oa.percent_encode(data)) == data
    assert oa.percent_encode(bytearray(data)) == oa.percent_encode(data)


@given(texts)
def test_percent_encode_output_alphabet(text):
    encoded = oa.percent_encode(text)
    assert set(encoded) <= set(oa.UNRESERVED) | set("%0123456789ABCDEF")
    # every escape is "%" and two uppercase hex digits
    for i, ch in enumerate(encoded):
        if ch == "%":
            assert all(c in "0123456789ABCDEF" for c in encoded[i + 1 : i + 3])
            assert len(encoded[i + 1 : i + 3]) == 2


@given(texts, texts)
def test_percent_encode_is_injective(a, b):
    if a != b:
        assert oa.percent_encode(a) != oa.percent_encode(b)


@given(st.text(alphabet=oa.UNRESERVED))
def test_percent_encode_leaves_unreserved_alone(text):
    assert oa.percent_encode(text) == text


@pytest.mark.parametrize("value", [None, 1, 1.5, ["a"]])
def test_percent_encode_rejects_other_types(value):
    with pytest.raises(TypeError, match="expected str or bytes"):
        oa.percent_encode(value)


# ---- §3.4.1.2 Base string URI ----


@vector_cases("base_string_uri")
def test_base_string_uri_vectors(case):
    check(case, lambda: oa.base_string_uri(case["input"]["url"]))


@given(
    st.sampled_from(["http", "https", "HTTP", "Https"]),
    st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}(\.[A-Za-z]{2,5}){1,2}", fullmatch=True),
    st.one_of(st.none(), st.integers(1, 65535)),
    st.from_regex(r"(/[A-Za-z0-9._~-]{0,8}){0,4}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9=&]{0,10}", fullmatch=True),
)
def test_base_string_uri_rules(scheme, host, port, path, query):
    url = f"{scheme}://{host}{'' if port is None else f':{port}'}{path}?{query}#frag"
    uri = oa.base_string_uri(url)
    default = {"http": 80, "https": 443}[scheme.lower()]
    shown_port = "" if port in (None, default) else f":{port}"
    assert uri == f"{scheme.lower()}://{host.lower()}{shown_port}{path or '/'}"


def test_base_string_uri_rejects_non_str():
    with pytest.raises(TypeError, match="url: expected str"):
        oa.base_string_uri(b"http://example.com/")


# ---- §3.4.1.3 Request parameters ----


@vector_cases("normalize_parameters")
def test_normalize_parameters_vectors(case):
    check(case, lambda: oa.normalize_parameters(pairs(case["input"]["params"])))


@given(pair_lists, st.randoms())
def test_normalize_parameters_ignores_order(params, rnd):
    shuffled = list(params)
    rnd.shuffle(shuffled)
    assert oa.normalize_parameters(shuffled) == oa.normalize_parameters(params)


@given(pair_lists)
def test_normalize_parameters_sorts_by_encoded_name_then_value(params):
    normalized = oa.normalize_parameters(params)
    encoded = sorted((oa.percent_encode(n), oa.percent_encode(v)) for n, v in params)
    assert normalized == "&".join(f"{n}={v}" for n, v in encoded)


def test_form_decoding_of_query_and_body():
    # RFC 5849 §3.4.1.3.1: "+" is a space; blank values kept; order kept; raw octets kept.
    form = "a=x+y&&b&c=%2B&d=%FF&e=%7e%41%2d&f=%c3%a9,"
    assert oa._parse_form(form) == [
        ("a", "x y"),
        ("b", ""),
        ("c", "+"),
        ("d", b"\xff"),
        ("e", "~A-"),
        ("f", "\u00e9,"),
    ]
    assert oa._parse_form_encoded(form) == [
        f"{oa.percent_encode(n)} {oa.percent_encode(v)}" for n, v in oa._parse_form(form)
    ]


# Form-encoded text: arbitrary mixes of unreserved characters, "+", reserved
# characters, and escapes in either case, of any byte.
form_texts = st.lists(
    st.one_of(
        st.sampled_from(list(oa.UNRESERVED + "+!*'(),:/?@$;%")),
        st.integers(0, 255).map(lambda b: f"%{b:02X}"),
        st.integers(0, 255).map(lambda b: f"%{b:02x}"),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="&="),
    ),
    max_size=20,
).map("".join)


@given(form_texts)
def test_form_reencode_fast_path_equals_decode_then_encode(text):
    assert oa._form_reencode(text) == oa.percent_encode(oa._form_decode(text))


@given(st.lists(st.tuples(form_texts, st.one_of(st.none(), form_texts)), max_size=8), st.booleans())
def test_parse_form_encoded_fast_path_equals_field_by_field(fields, empty_field):
    text = "&".join(n if v is None else f"{n}={v}" for n, v in fields) + ("&" if empty_field else "")
    expected = [f"{oa.percent_encode(n)} {oa.percent_encode(v)}" for n, v in oa._parse_form(text)]
    assert oa._parse_form_encoded(text) == expected


def test_parse_form_encoded_takes_the_fast_path_for_canonical_text():
    # Canonical text comes back with only "=" -> " " (and "+" -> "%20").
    assert oa._parse_form_encoded("a=b%2C&c&d=x+y&") == ["a b%2C", "c ", "d x%20y"]


# ---- §3.4.1.1 Signature base string ----


@vector_cases("signature_base_string")
def test_signature_base_string_vectors(case):
    inp = case["input"]
    check(case, lambda: oa.signature_base_string(inp["method"], inp["url"], pairs(inp["params"])))


@given(st.sampled_from(["GET", "post", "Delete"]), pair_lists, pair_lists)
def test_base_string_has_three_parts(method, query, params):
    url = "https://api.etrade.com/v1/x?" + "&".join(
        f"{oa.percent_encode(n)}={oa.percent_encode(v)}" for n, v in query
    )
    parts = oa.signature_base_string(method, url, params).split("&")
    assert len(parts) == 3
    assert parts[0] == method.upper()
    assert parts[1] == "https%3A%2F%2Fapi.etrade.com%2Fv1%2Fx"
    kept = [(n, v) for n, v in params if n not in ("realm", "oauth_signature")]
    kept += [(n, v) for n, v in query if n != "oauth_signature"]
    assert unquote(parts[2]) == oa.normalize_parameters(kept)


def test_base_string_excludes_signature_and_header_realm_only():
    with_extra = oa.signature_base_string(
        "GET", "http://e.com/?realm=q", [("oauth_signature", "x"), ("realm", "r"), ("a", "1")]
    )
    assert with_extra == "GET&http%3A%2F%2Fe.com%2F&a%3D1%26realm%3Dq"


# ---- §3.4.2-3.4.4 Signature methods ----


@vector_cases("signature")
def test_signature_vectors(case):
    inp = case["input"]
    check(
        case,
        lambda: oa.signature(
            inp["base_string"], inp["consumer_secret"], inp["token_secret"], inp["signature_method"]
        ),
    )


def test_rsa_sha1_error_says_why():
    with pytest.raises(ValueError, match="RSA key library"):
        oa.signature("x", "s", signature_method="RSA-SHA1")


# ---- §3.5.1 Authorization header ----


@vector_cases("authorization_header")
def test_authorization_header_vectors(case):
    inp = case["input"]
    check(case, lambda: oa.authorization_header(pairs(inp["params"]), inp["realm"]))


@vector_cases("parse_authorization_header")
def test_parse_authorization_header_vectors(case):
    check(case, lambda: oa.parse_authorization_header(case["input"]["value"]))


def test_etrade_sample_is_read_from_the_doc_as_printed():
    # The header exactly as ../shared/etrade-docs/get-access-token.txt prints it.
    doc = HERE.parent / "shared" / "etrade-docs" / "get-access-token.txt"
    if not doc.exists():
        pytest.skip("shared/etrade-docs is not beside this checkout")
    lines = doc.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Authorization:"))
    # The doc has a no-break space after "Authorization:"; that is the field's
    # leading white space (RFC 7230 OWS), not part of the value.
    header = lines[start].partition(":")[2].strip() + "\n" + lines[start + 1]
    expected = next(c for c in load_cases("parse_authorization_header") if c["id"] == "etrade-sample")
    assert oa.parse_authorization_header(header) == expected["expect"]


header_names = no_ctl_texts.filter(lambda s: s != "realm" and s != "")


@given(
    st.dictionaries(header_names, no_ctl_texts, max_size=10),
    st.one_of(st.none(), no_ctl_texts),
)
def test_header_round_trips(params, realm):
    parsed = oa.parse_authorization_header(oa.authorization_header(params, realm))
    expected = dict(params) if realm is None else {"realm": realm, **params}
    assert parsed == expected


@given(st.text(max_size=200))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_parse_authorization_header_gives_dict_or_value_error(text):
    try:
        result = oa.parse_authorization_header(text)
    except ValueError:
        return
    assert isinstance(result, dict)


# ---- §3.3 Nonce and timestamp ----


def test_nonce_is_urlsafe_and_128_bits():
    nonce = oa.make_nonce()
    assert set(nonce) <= set(string.ascii_letters + string.digits + "-_")
    assert len(nonce) * 6 >= 128


def test_nonces_do_not_repeat_over_10000_draws():
    assert len({oa.make_nonce() for _ in range(10_000)}) == 10_000


def test_timestamp_whole_seconds_with_offset():
    assert oa.make_timestamp(now=1273254425.99) == "1273254425"
    assert oa.make_timestamp(-300, now=1273254425.0) == "1273254125"
    assert oa.make_timestamp().isdigit()


# ---- Sign and verify ----


def sign_case_kwargs(case: dict) -> dict:
    options = dict(case["input"]["options"])
    if isinstance(options.get("body"), list):
        options["body"] = pairs(options["body"])
    return options


@vector_cases("sign_request")
def test_sign_request_vectors(case):
    inp = case["input"]
    options = sign_case_kwargs(case)
    if "error" in case:
        with pytest.raises(ERRORS[case["error"]]):
            oa.sign_request(inp["method"], inp["url"], **options)
        return
    header = oa.sign_request(inp["method"], inp["url"], **options)
    params = oa.parse_authorization_header(header)
    assert params["oauth_signature"] == case["expect"]["oauth_signature"]
    # The header carries the same protocol parameters the base string signed.
    sent = [(n, v) for n, v in params.items() if n != "oauth_signature"]
    body = options.get("body")
    if isinstance(body, str):
        form = oa._is_form(options.get("content_type"))
        body = parse_qsl(body, keep_blank_values=True) if form else []
    signed_params = sent + (body or [])
    assert oa.signature_base_string(inp["method"], inp["url"], signed_params) == case["expect"]["base_string"]
    for optional in ("token", "callback", "verifier"):
        assert (f"oauth_{optional}" in params) == (optional in options)
    # Whoever holds the secrets accepts it.
    assert oa.verify_request(
        inp["method"],
        inp["url"],
        header,
        consumer_secret=options["consumer_secret"],
        token_secret=options.get("token_secret", ""),
        body=options.get("body"),
        content_type=options.get("content_type"),
    )


def test_sign_request_sends_version_and_fresh_nonce():
    a = oa.parse_authorization_header(
        oa.sign_request("GET", "https://e.com/", consumer_key="k", consumer_secret="s")
    )
    b = oa.parse_authorization_header(
        oa.sign_request("GET", "https://e.com/", consumer_key="k", consumer_secret="s")
    )
    assert a["oauth_version"] == "1.0"
    assert a["oauth_nonce"] != b["oauth_nonce"]
    assert "oauth_token" not in a


def test_sign_request_realm_goes_first():
    header = oa.sign_request("GET", "https://e.com/", consumer_key="k", consumer_secret="s", realm="")
    assert header.startswith('OAuth realm="",oauth_consumer_key="k"')


@pytest.mark.parametrize(
    "field, value",
    [("consumer_key", 1), ("consumer_secret", None), ("token", b"t"), ("verifier", 5), ("timestamp", 1)],
)
def test_sign_request_type_errors_name_the_parameter(field, value):
    kwargs = {"consumer_key": "k", "consumer_secret": "s", field: value}
    with pytest.raises(TypeError, match=field):
        oa.sign_request("GET", "https://e.com/", **kwargs)


@pytest.mark.parametrize(
    "field", ["method", "url", "consumer_key", "token", "callback", "verifier", "realm", "nonce", "timestamp"]
)
@pytest.mark.parametrize("bad", ["\r", "\n", "\0"])
def test_sign_request_refuses_control_characters(field, bad):
    kwargs = {"consumer_key": "k", "consumer_secret": "s"}
    method, url = "GET", "https://e.com/"
    if field == "method":
        method += bad
    elif field == "url":
        url += bad
    else:
        kwargs[field] = "x" + bad
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        oa.sign_request(method, url, **kwargs)


def test_sign_request_refuses_control_characters_in_body_fields():
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        oa.sign_request("POST", "https://e.com/", consumer_key="k", consumer_secret="s", body={"a": "x\r\ny"})


def test_sign_request_body_type_errors():
    with pytest.raises(TypeError, match="body"):
        oa.sign_request("POST", "https://e.com/", consumer_key="k", consumer_secret="s", body=42)
    with pytest.raises(TypeError, match="pair"):
        oa.sign_request("POST", "https://e.com/", consumer_key="k", consumer_secret="s", body=[("a",)])
    with pytest.raises(ValueError, match="content type"):
        oa.sign_request(
            "POST",
            "https://e.com/",
            consumer_key="k",
            consumer_secret="s",
            body={"a": "1"},
            content_type="application/json",
        )


# A request: method, URL with query, consumer/token secrets, optional form body.
requests_st = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
        "path": st.from_regex(r"(/[A-Za-z0-9._~-]{1,8}){1,3}", fullmatch=True),
        "query": pair_lists,
        "consumer_secret": no_ctl_texts,
        "token_secret": no_ctl_texts,
        "token": st.one_of(st.none(), no_ctl_texts),
        "body": st.one_of(st.none(), st.lists(st.tuples(no_ctl_texts, no_ctl_texts), min_size=1, max_size=5)),
    }
)


def request_url(req: dict) -> str:
    query = "&".join(f"{oa.percent_encode(n)}={oa.percent_encode(v)}" for n, v in req["query"])
    return f"https://api.etrade.com{req['path']}" + (f"?{query}" if query else "")


def sign(req: dict) -> str:
    return oa.sign_request(
        req["method"],
        request_url(req),
        consumer_key="key",
        consumer_secret=req["consumer_secret"],
        token=req["token"],
        token_secret=req["token_secret"],
        body=req["body"],
    )


def verify(req: dict, header: str) -> bool:
    return oa.verify_request(
        req["method"],
        request_url(req),
        header,
        consumer_secret=req["consumer_secret"],
        token_secret=req["token_secret"],
        body=req["body"],
    )


@given(requests_st)
def test_verify_accepts_what_sign_made(req):
    assert verify(req, sign(req))


def _changes(req: dict):
    """Yield (what, changed request): every single change must break the signature."""
    yield "method", {**req, "method": "PATCH"}
    yield "path", {**req, "path": req["path"] + "x"}
    yield "query added", {**req, "query": req["query"] + [("extra", "1")]}
    if req["query"]:
        n, v = req["query"][0]
        yield "query value", {**req, "query": [(n, v + "x")] + req["query"][1:]}
    yield "consumer secret", {**req, "consumer_secret": req["consumer_secret"] + "x"}
    yield "token secret", {**req, "token_secret": req["token_secret"] + "x"}
    body = req["body"] or []
    yield "body field added", {**req, "body": body + [("b", "2")]}
    if req["body"]:
        n, v = body[0]
        yield "body value", {**req, "body": [(n, v + "x")] + body[1:]}


@given(requests_st)
def test_any_single_change_breaks_the_signature(req):
    header = sign(req)
    for what, changed in _changes(req):
        assert not verify(changed, header), what


@given(requests_st, st.sampled_from(["oauth_nonce", "oauth_timestamp", "oauth_consumer_key"]))
def test_changing_a_header_parameter_breaks_the_signature(req, name):
    params = oa.parse_authorization_header(sign(req))
    params[name] += "1"
    assert not verify(req, oa.authorization_header(params))


def test_verify_malformed_header_is_value_error():
    with pytest.raises(ValueError):
        oa.verify_request("GET", "https://e.com/", "Basic abc", consumer_secret="s")
    with pytest.raises(ValueError, match="oauth_signature is missing"):
        oa.verify_request(
            "GET", "https://e.com/", 'OAuth oauth_signature_method="HMAC-SHA1"', consumer_secret="s"
        )
    with pytest.raises(ValueError, match="oauth_signature_method is missing"):
        oa.verify_request("GET", "https://e.com/", 'OAuth oauth_signature="x"', consumer_secret="s")


def test_verify_non_ascii_signature_is_false_not_crash():
    header = 'OAuth oauth_signature_method="HMAC-SHA1",oauth_signature="%C3%A9"'
    assert oa.verify_request("GET", "https://e.com/", header, consumer_secret="s") is False


def test_verify_plaintext():
    header = oa.sign_request(
        "GET",
        "https://e.com/",
        consumer_key="k",
        consumer_secret="c s",
        token_secret="t&",
        signature_method="PLAINTEXT",
    )
    assert oa.verify_request("GET", "https://e.com/", header, consumer_secret="c s", token_secret="t&")
    assert not oa.verify_request("GET", "https://e.com/", header, consumer_secret="c s", token_secret="t")


# ---- Command line ----


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HERE / "oauth1_etrade.py"), *args], capture_output=True, text=True, timeout=60
    )


def test_selftest_passes_with_one_summary_line():
    result = run_module("selftest")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("\n") == 1
    assert "known answers passed" in result.stdout


def test_selftest_as_module(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "oauth1_etrade", "selftest"],
        capture_output=True,
        text=True,
        cwd=HERE,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_selftest_fails_when_an_answer_is_wrong(tmp_path):
    # A copy of the module with one known answer broken must report failure.
    source = (HERE / "oauth1_etrade.py").read_text(encoding="utf-8")
    broken = source.replace('"tR3+Ty81lMeYAr/Fid0kMTYa/WM="', '"tR3+Ty81lMeYAr/Fid0kMTYa/WX="', 1)
    assert broken != source
    (tmp_path / "oauth1_etrade.py").write_text(broken, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(tmp_path / "oauth1_etrade.py"), "selftest"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Appendix A" in result.stdout


def test_module_doctests():
    import doctest

    failures, tried = doctest.testmod(oa)
    assert tried > 5
    assert failures == 0

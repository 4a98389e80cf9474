"""OAuth 1.0a (RFC 5849) client for the E*TRADE API, in one standard-library module.

oauth1_etrade signs requests exactly as RFC 5849 says, and knows E*TRADE's token
rules. It needs nothing but the Python standard library (3.9 or newer, CPython or
PyPy): to vendor it, copy this one file into your project.

Sections, in order:
    constants and errors
    §3.6 percent encoding
    §3.4.1 signature base string (§3.4.1.2 URI, §3.4.1.3 parameters, §3.4.1.1 assembly)
    §3.4.2-3.4.4 signature methods
    §3.5.1 Authorization header (build and parse)
    §3.3 nonce and timestamp
    sign and verify
    command line

References:
    RFC 5849, The OAuth 1.0 Protocol: https://www.rfc-editor.org/rfc/rfc5849
    E*TRADE authorization API: https://apisb.etrade.com/docs/api/authorization/get_access_token.html

Licence: MIT.
"""

from __future__ import annotations

import binascii
import bisect
import hmac
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import quote as _url_quote
from urllib.parse import unquote, unquote_to_bytes, urlsplit

__version__ = "0.1.0"

__all__ = [
    "OAuthError",
    "percent_encode",
    "base_string_uri",
    "normalize_parameters",
    "signature_base_string",
    "signature",
    "authorization_header",
    "parse_authorization_header",
    "make_nonce",
    "make_timestamp",
    "sign_request",
    "verify_request",
    "main",
]

# ---- Constants ----

#: RFC 5849 §3.6: the characters that are never percent-encoded.
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"

#: RFC 5849 §3.4.1.2: ports left out of the base string URI.
DEFAULT_PORTS = {"http": 80, "https": 443}

#: RFC 5849 §3.4.1.3.1: the only body content type whose parameters are signed.
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

# Byte -> text it becomes under §3.6, as a str.translate table over code points
# 0-255: a latin-1 view of the UTF-8 bytes is translated in one C-level call.
# A full list, not a dict: translate() pays for a raised KeyError on every
# character a dict lacks, which made it 2.5x slower.
_ESCAPE_TABLE = [chr(b) if chr(b) in UNRESERVED else f"%{b:02X}" for b in range(256)]

# RFC 3986 §3.3 path characters (pchar and "/") plus "%" so that escapes already
# in a path stay as they are; anything else in a path is escaped for signing.
_PATH_SAFE = "/%:@!$&'()*+,;=" + "-._~"

# `typing` costs 5 ms to import and is needed only by type checkers (which
# take any name TYPE_CHECKING as true), so the aliases live behind this flag.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union

    # A parameter is a name/value pair; values decoded from a query or form
    # body are bytes when not valid UTF-8 (they are signed as those bytes).
    Text = Union[str, bytes]
    Param = tuple[Text, Text]


# ---- Errors ----


class OAuthError(Exception):
    """A failure reported by (or about) the OAuth provider.

    ``status`` is the HTTP status or None; ``problem`` is the provider's
    ``oauth_problem`` (RFC 5849 problem reporting, as E*TRADE sends it) or None.
    The message never contains a secret.
    """

    def __init__(self, message: str, *, status: int | None = None, problem: str | None = None):
        super().__init__(message)
        self.status = status
        self.problem = problem


def _require_str(label: str, value: object) -> str:
    """Return ``value`` if it is a str, else raise a TypeError naming ``label``."""
    if not isinstance(value, str):
        raise TypeError(f"{label}: expected str, but got {type(value).__name__!r}")
    return value


def _has_controls(text: str) -> bool:
    """Return whether ``text`` holds CR, LF or NUL (header injection)."""
    return "\r" in text or "\n" in text or "\0" in text


def _reject_controls(label: str, value: str) -> None:
    """Raise ValueError if ``value`` holds CR, LF or NUL (header injection)."""
    if _has_controls(value):
        raise ValueError(f"{label} contains a CR, LF or NUL character; refusing to sign it")


def _require_texts(labels: Sequence[str], values: Sequence[object], required: int) -> None:
    """Check that values are str with no CR, LF or NUL; None is allowed after the first ``required``.

    One join checks the types and one scan the characters of all at once; the
    per-field loop runs only to name the culprit.
    """
    present = [*values[:required], *(v for v in values[required:] if v is not None)]
    try:
        joined = "".join(present)  # type: ignore[arg-type]
    except TypeError:
        joined = None
    if joined is None or _has_controls(joined):
        for index, (label, value) in enumerate(zip(labels, values)):
            if value is not None or index < required:
                _reject_controls(label, _require_str(label, value))


def _reject_encoded_controls(label: str, encoded: str) -> None:
    """Raise ValueError if percent-encoded text holds an escaped CR, LF or NUL.

    Every "%" in §3.6 output starts an escape, so "%0A" occurs only where a raw
    LF was encoded: one scan of the joined text checks every parameter at once.
    """
    if "%0D" in encoded or "%0A" in encoded or "%00" in encoded:
        raise ValueError(f"{label} contains a CR, LF or NUL character; refusing to sign it")


# ---- §3.6 Percent encoding ----


def percent_encode(value: str | bytes) -> str:
    """Return ``value`` percent-encoded (RFC 5849 §3.6).

    Text is taken as UTF-8; every byte outside ALPHA, DIGIT, "-", ".", "_", "~"
    becomes "%XX" with uppercase hex.

    >>> percent_encode("Ladies + Gentlemen")
    'Ladies%20%2B%20Gentlemen'
    >>> percent_encode("\u2713")
    '%E2%9C%93'
    """
    if isinstance(value, str):
        # Fast path: most values (keys, nonces, timestamps) need no escape.
        if not value.rstrip(UNRESERVED):
            return value
        if not value.isascii():
            try:
                value = value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"percent_encode: text is not valid Unicode (lone surrogate at index {exc.start})"
                ) from None
            return value.decode("latin-1").translate(_ESCAPE_TABLE)
        return value.translate(_ESCAPE_TABLE)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1").translate(_ESCAPE_TABLE)
    raise TypeError(f"percent_encode: expected str or bytes, but got {type(value).__name__!r}")


# Already-canonical §3.6 text: unreserved characters and uppercase escapes, none
# of which escapes an unreserved byte (that would be written as the byte).
# Text in canonical §3.6 form holds only unreserved characters and "%XX"
# escapes with uppercase hex, none of which escapes an unreserved byte (that
# would be written as the byte itself). The regex finds any "%" that breaks it.
_NONCANONICAL_ESCAPE_RE = re.compile(
    r"%(?:(?![0-9A-F]{2})|3[0-9]|4[1-9A-F]|5[0-9AF]|6[1-9A-F]|7[0-9AE]|2[DE])"
)
_FORM_CHARS = UNRESERVED + "%&="
_TWO_EQUALS_RE = re.compile(r"=[^&]*=")


def _is_canonical(text: str, allowed: str = UNRESERVED + "%") -> bool:
    """Return whether text is canonical §3.6 output (with ``allowed`` separators)."""
    return not text.rstrip(allowed) and not _NONCANONICAL_ESCAPE_RE.search(text)


def _form_decode(text: str) -> Text:
    """Return a form-encoded name or value decoded (W3C HTML 4.01 §17.13.4.1).

    "+" is a space and "%XX" a byte. Bytes that are not UTF-8 are returned as
    bytes so that they are signed exactly as sent (RFC 5849 §3.4.1.3.1).
    """
    if "%" not in text and "+" not in text:
        return text
    raw = unquote_to_bytes(text.replace("+", " "))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _form_reencode(text: str) -> str:
    """Return percent_encode(_form_decode(text)): a form-encoded string in §3.6 form.

    Fast path: once "+" is written "%20", text that is already canonical §3.6
    output decodes and re-encodes to itself, so it is returned as it is.
    """
    text = text.replace("+", "%20")
    if _is_canonical(text):
        return text
    return percent_encode(_form_decode(text))


def _parse_form(text: str) -> list[Param]:
    """Return the decoded name/value pairs of a form-encoded string, in order.

    Empty fields are skipped; a field without "=" has an empty value; repeated
    names are kept (RFC 5849 §3.4.1.3.1, its "c2" example).
    """
    pairs: list[Param] = []
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((_form_decode(name), _form_decode(value)))
    return pairs


def _parse_form_encoded(text: str) -> list[str]:
    """Return the pairs of a form-encoded string as encoded "name value" strings.

    The same pairs as _parse_form, percent-encoded (RFC 5849 §3.4.1.3.1-2).
    Fast path: when every name and value is already canonical (as any
    RFC 3986 encoder writes them), each field only has its "=" turned into a
    space, in C, with no per-parameter function call.
    """
    plus_free = text.replace("+", "%20")
    if _is_canonical(plus_free, _FORM_CHARS) and not _TWO_EQUALS_RE.search(plus_free):
        return [
            field.replace("=", " ") if "=" in field else field + " "
            for field in plus_free.split("&")
            if field
        ]
    pairs = []
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append(f"{_form_reencode(name)} {_form_reencode(value)}")
    return pairs


# ---- §3.4.1.2 Base string URI ----


def _split_url(url: str) -> tuple[str, str]:
    """Return (base string URI, raw query) of ``url`` (RFC 5849 §3.4.1.2)."""
    _require_str("url", url)
    _reject_controls("url", url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"url: scheme must be http or https, not {parts.scheme!r}")
    host = parts.hostname  # lowercased, IPv6 brackets removed
    if not host:
        raise ValueError("url: has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("url: port is not a number from 0 to 65535") from None
    if ":" in host:
        host = f"[{host}]"  # RFC 3986 §3.2.2: an IPv6 literal stays in brackets
    if port is not None and port != DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    path = parts.path or "/"
    if path.rstrip(_PATH_SAFE + UNRESERVED):
        # NOTE: RFC 5849 only shows this in its "r%20v" example (oauthlib #650):
        # a space or non-ASCII character in the path is signed percent-encoded.
        path = _url_quote(path, safe=_PATH_SAFE)
    return f"{scheme}://{host}{path}", parts.query


def base_string_uri(url: str) -> str:
    """Return the base string URI of ``url`` (RFC 5849 §3.4.1.2).

    Scheme and host are lowercased, the default port (80 for http, 443 for
    https) is left out and other ports kept, query and fragment are dropped,
    and an empty path becomes "/".

    >>> base_string_uri("http://EXAMPLE.COM:80/r%20v/X?id=123")
    'http://example.com/r%20v/X'
    """
    return _split_url(url)[0]


# ---- §3.4.1.3 Request parameters ----


def _is_form(content_type: str | None) -> bool:
    """Return whether a Content-Type is application/x-www-form-urlencoded."""
    if content_type is None:
        return False
    _require_str("content_type", content_type)
    return content_type.partition(";")[0].strip().lower() == FORM_CONTENT_TYPE


def _encoded_body_parameters(body: object, content_type: str | None) -> list[str]:
    """Return the body parameters that are signed, as encoded "name value" strings (§3.4.1.3.1).

    A str or bytes body is signed only when its content type is
    application/x-www-form-urlencoded. A mapping or a list of pairs is form
    fields, signed as given (content type absent or form).
    """
    if body is None:
        return []
    if isinstance(body, (str, bytes, bytearray)):
        if not _is_form(content_type):
            return []
        if isinstance(body, (bytes, bytearray)):
            try:
                body = bytes(body).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("body: a form-encoded body must be UTF-8 text") from None
        _reject_controls("body", body)
        return _parse_form_encoded(body)
    if content_type is not None and not _is_form(content_type):
        raise ValueError(
            f"body: fields given as pairs are form fields; their content type must be {FORM_CONTENT_TYPE}"
        )
    return _encode_pairs(_field_pairs("body", body))


def _field_pairs(label: str, fields: object) -> list[tuple[str, str]]:
    """Return a mapping or a list/tuple of (name, value) str pairs as a list."""
    if isinstance(fields, Mapping):
        items: Iterable[object] = fields.items()
    elif isinstance(fields, (list, tuple)):
        items = fields
    else:
        raise TypeError(
            f"{label}: expected str, bytes, a mapping or a list of (name, value) pairs, "
            f"but got {type(fields).__name__!r}"
        )
    pairs = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(f"{label}: each field must be a (name, value) pair")
        name, value = item
        pairs.append((_require_str(f"{label} field name", name), _require_str(f"{label} field value", value)))
    return pairs


# Inside the base string machinery a parameter is one string, "name value",
# both parts percent-encoded (§3.4.1.3.2 item 1). §3.6 output never holds a
# space, so the space separates them unambiguously, and it sorts below every
# character §3.6 output can hold: sorting these strings orders by name, then
# by value, exactly as sorting (name, value) tuples would (§3.4.1.3.2 item 2),
# faster, and without thousands of tuples for the garbage collector to scan.


def _encode_pairs(params: Iterable[tuple[Text, Text]]) -> list[str]:
    """Return the pairs as encoded "name value" strings (§3.4.1.3.2 item 1)."""
    return [f"{percent_encode(name)} {percent_encode(value)}" for name, value in params]


def _sorted_pairs(encoded: list[str]) -> list[str]:
    """Return encoded "name value" strings in §3.4.1.3.2 order, oauth_signature left out.

    §3.4.1.3.1: "oauth_signature" is excluded, whichever source it came from;
    once sorted, any such pairs stand together where bisect finds them.
    """
    pairs = sorted(encoded)
    start = bisect.bisect_left(pairs, "oauth_signature ")
    end = start
    while end < len(pairs) and pairs[end].startswith("oauth_signature "):
        end += 1
    del pairs[start:end]
    return pairs


def normalize_parameters(params: Iterable[tuple[Text, Text]]) -> str:
    """Return the normalized request parameters (RFC 5849 §3.4.1.3.2).

    Names and values are encoded (§3.6), sorted by name then value, joined
    as name=value with "&".

    >>> normalize_parameters([("b", "2"), ("a", "x y"), ("a", "1")])
    'a=1&a=x%20y&b=2'
    """
    pairs = _encode_pairs(params)
    pairs.sort()
    normalized = "&".join(pairs).replace(" ", "=")
    _reject_encoded_controls("a parameter", normalized)
    return normalized


# ---- §3.4.1.1 Signature base string ----


def _signature_base_string(method: str, url: str, encoded: list[str]) -> str:
    """Return the base string of encoded "name value" parameters plus url's query (§3.4.1.1)."""
    _require_str("method", method)
    _reject_controls("method", method)
    if not method:
        raise ValueError("method: must not be empty")
    uri, query = _split_url(url)
    if query:
        encoded = encoded + _parse_form_encoded(query)
    joined = "&".join(_sorted_pairs(encoded))
    _reject_encoded_controls("a parameter", joined)
    # The normalized parameters are encoded once more (§3.4.1.1 step 5). They
    # hold only §3.6 output plus "=" and "&", so three replaces do it exactly.
    normalized = joined.replace("%", "%25").replace(" ", "%3D").replace("&", "%26")
    return f"{percent_encode(method.upper())}&{percent_encode(uri)}&{normalized}"


def signature_base_string(method: str, url: str, params: Iterable[tuple[Text, Text]] = ()) -> str:
    """Return the signature base string (RFC 5849 §3.4.1.1).

    ``params`` are the protocol and body parameters; the query of ``url`` is
    decoded with form rules ("+" is a space) and added. ``oauth_signature``
    is left out wherever it is, and ``realm`` in ``params`` (the header's
    realm; a query parameter named realm is signed) (§3.4.1.3.1). The method
    is uppercased.

    >>> signature_base_string("get", "http://example.com/r?b=2", [("a", "1")])
    'GET&http%3A%2F%2Fexample.com%2Fr&a%3D1%26b%3D2'
    """
    return _signature_base_string(method, url, _encode_pairs((n, v) for n, v in params if n != "realm"))


# ---- §3.4.2-3.4.4 Signature methods ----


def _signing_key(consumer_secret: str, token_secret: str) -> str:
    """Return the key: encoded consumer secret "&" encoded token secret (§3.4.2)."""
    return f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}"


def _hmac_sha1(base_string: str, key: str) -> str:
    """Return base64(HMAC-SHA1(key, base string)) (RFC 5849 §3.4.2)."""
    digest = hmac.digest(key.encode(), base_string.encode(), "sha1")
    return binascii.b2a_base64(digest, newline=False).decode()


def _hmac_sha256(base_string: str, key: str) -> str:
    """Return base64(HMAC-SHA256(key, base string)) (§3.4.2 with SHA-256)."""
    digest = hmac.digest(key.encode(), base_string.encode(), "sha256")
    return binascii.b2a_base64(digest, newline=False).decode()


def _plaintext(base_string: str, key: str) -> str:
    """Return the key itself (RFC 5849 §3.4.4)."""
    return key


#: Signature method name -> function(base string, key) -> signature.
SIGNATURE_METHODS: Mapping[str, Callable[[str, str], str]] = {
    "HMAC-SHA1": _hmac_sha1,
    "HMAC-SHA256": _hmac_sha256,
    "PLAINTEXT": _plaintext,
}


def _signature_function(signature_method: str) -> Callable[[str, str], str]:
    """Return the function for a signature method name, or raise ValueError."""
    _require_str("signature_method", signature_method)
    try:
        return SIGNATURE_METHODS[signature_method]
    except KeyError:
        pass
    if signature_method == "RSA-SHA1":
        raise ValueError(
            "signature_method: RSA-SHA1 (RFC 5849 §3.4.3) needs an RSA key library, "
            "which is outside this standard-library-only module; E*TRADE accepts HMAC-SHA1 only"
        )
    raise ValueError(
        f"signature_method: unsupported {signature_method!r}; use one of {', '.join(SIGNATURE_METHODS)}"
    )


def signature(
    base_string: str,
    consumer_secret: str,
    token_secret: str = "",
    signature_method: str = "HMAC-SHA1",
) -> str:
    """Return the signature of a base string (RFC 5849 §3.4.2, §3.4.4).

    HMAC-SHA1 and HMAC-SHA256 give base64 text; PLAINTEXT gives the key. The
    key is ``encode(consumer_secret) & encode(token_secret)``. The value is
    returned before it is percent-encoded for the header.

    >>> signature("GET&x&", "kd94hf93k423kf44", "", "PLAINTEXT")
    'kd94hf93k423kf44&'
    """
    method = _signature_function(signature_method)
    _require_str("base_string", base_string)
    key = _signing_key(
        _require_str("consumer_secret", consumer_secret), _require_str("token_secret", token_secret)
    )
    return method(base_string, key)


# ---- §3.5.1 Authorization header ----

# RFC 2617 auth-param: token "=" ( token | quoted-string ), separated by ",".
# NOTE: E*TRADE's documented sample breaks the line after "OAuth", has a
# no-break space (U+00A0) after "oauth_consumer_key=" and an unquoted
# oauth_token value; so line breaks, white space including U+00A0 around "="
# and ",", and bare token values are accepted.
_WS = r"[ \t\r\n\u00a0]"
_LWS = _WS + "*"
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]"  # RFC 7230 §3.2.6 tchar
_SCHEME_RE = re.compile(_LWS + "OAuth(?:" + _WS + r"+|\Z)", re.IGNORECASE)
_SEPARATOR_RE = re.compile(r"[ \t\r\n\u00a0,]*")
_AUTH_PARAM_RE = re.compile(
    f"({_TOKEN}+){_LWS}={_LWS}" + r'(?:"((?:[^"\\]|\\[\s\S])*)"|(' + _TOKEN + "*))" + _LWS
)
_QUOTED_PAIR_RE = re.compile(r"\\([\s\S])")


def _quote_realm(realm: str) -> str:
    """Return ``realm`` as an RFC 2617 quoted-string (not percent-encoded)."""
    _require_str("realm", realm)
    _reject_controls("realm", realm)
    return '"' + realm.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization_header(
    params: Mapping[str, str] | Iterable[tuple[str, str]], realm: str | None = None
) -> str:
    """Return the Authorization header value (RFC 5849 §3.5.1).

    ``OAuth`` then realm first when given, then each parameter as
    ``name="value"`` with name and value percent-encoded, joined with ",".
    A name given twice is a ValueError (§3.1: a parameter appears once).

    >>> authorization_header({"oauth_token": "a/b="}, realm="Photos")
    'OAuth realm="Photos",oauth_token="a%2Fb%3D"'
    """
    items = params.items() if isinstance(params, Mapping) else params
    encoded: list[tuple[str, str]] = []
    seen = set()
    for name, value in items:
        encoded_name = percent_encode(_require_str("parameter name", name))
        if encoded_name == "realm":
            raise ValueError("authorization_header: pass realm as realm=, not as a parameter")
        if encoded_name in seen:
            raise ValueError(f"authorization_header: parameter {encoded_name!r} given twice (RFC 5849 §3.1)")
        seen.add(encoded_name)
        encoded.append((encoded_name, percent_encode(_require_str(encoded_name, value))))
    return _header(encoded, realm)


def _header(encoded: Iterable[tuple[str, str]], realm: str | None) -> str:
    """Return the header value from percent-encoded, distinct pairs (§3.5.1)."""
    fields = [f'{name}="{value}"' for name, value in encoded]
    if realm is not None:
        fields.insert(0, f"realm={_quote_realm(realm)}")
    header = "OAuth " + ",".join(fields)
    _reject_encoded_controls("a parameter", header)
    return header


def _decode_header_text(name: str, text: str) -> str:
    """Return a header name or value percent-decoded as UTF-8 (§3.5.1)."""
    if "%" not in text:
        return text
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"Authorization header: {name!r} is not percent-encoded UTF-8") from None


def parse_authorization_header(value: str) -> dict[str, str]:
    """Return the parameters of an OAuth Authorization header (RFC 5849 §3.5.1).

    Names and values are percent-decoded; ``realm`` is included as written
    (a quoted-string, not percent-encoded). The scheme is case-insensitive;
    white space and line breaks around "=" and ",", and unquoted values, are
    accepted, as in E*TRADE's documented sample. Duplicates, a missing
    ``OAuth`` scheme, unterminated quotes and other garbage raise ValueError.

    >>> parse_authorization_header('OAuth realm="", oauth_token= a%2Fb%3D')
    {'realm': '', 'oauth_token': 'a/b='}
    """
    _require_str("Authorization header", value)
    match = _SCHEME_RE.match(value)
    if not match:
        raise ValueError("Authorization header: the scheme is not 'OAuth'")
    result: dict[str, str] = {}
    pos, end = match.end(), len(value)
    while True:
        pos = _SEPARATOR_RE.match(value, pos).end()  # type: ignore[union-attr]
        if pos == end:
            return result
        param = _AUTH_PARAM_RE.match(value, pos)
        if not param:
            raise ValueError(f"Authorization header: expected name=value at character {pos}")
        pos = param.end()
        if pos < end and value[pos] != ",":
            what = "an unterminated quoted value" if value[pos] == '"' else "a missing ','"
            raise ValueError(f"Authorization header: {what} at character {pos}")
        raw_name, quoted, bare = param.groups()
        raw_value = bare if quoted is None else _QUOTED_PAIR_RE.sub(r"\1", quoted)
        name = _decode_header_text(raw_name, raw_name)
        if name in result:
            raise ValueError(f"Authorization header: parameter {name!r} appears twice (RFC 5849 §3.1)")
        result[name] = raw_value if name == "realm" else _decode_header_text(name, raw_value)


# ---- §3.3 Nonce and timestamp ----


def make_nonce() -> str:
    """Return a fresh nonce: 128 random bits, URL-safe text (RFC 5849 §3.3)."""
    import secrets  # noqa: PLC0415 (here, not at the top: it imports `random`, 2 ms)

    return secrets.token_urlsafe(16)


def make_timestamp(offset: float = 0.0, *, now: float | None = None) -> str:
    """Return the timestamp: whole seconds since the epoch, as text (RFC 5849 §3.3).

    ``offset`` (seconds) is added to correct a skewed clock; ``now`` replaces
    the system clock.

    >>> make_timestamp(60, now=1191242096.9)
    '1191242156'
    """
    return str(int((time.time() if now is None else now) + offset))


# ---- Sign and verify ----


def _protocol_parameters(
    consumer_key: str,
    token: str | None,
    callback: str | None,
    verifier: str | None,
    signature_method: str,
    nonce: str | None,
    timestamp: str | None,
) -> list[tuple[str, str]]:
    """Return the protocol parameters to sign and send, values encoded (RFC 5849 §3.1).

    The names are unreserved constants, so only the values need §3.6; they are
    encoded once here and reused for the base string and the header.
    """
    params = [
        ("oauth_consumer_key", percent_encode(consumer_key)),
        ("oauth_signature_method", percent_encode(signature_method)),
        ("oauth_timestamp", percent_encode(make_timestamp() if timestamp is None else timestamp)),
        ("oauth_nonce", percent_encode(make_nonce() if nonce is None else nonce)),
        # §3.1: OPTIONAL, "1.0" when present; sent because common servers expect it.
        ("oauth_version", "1.0"),
    ]
    if token is not None:
        params.append(("oauth_token", percent_encode(token)))
    if callback is not None:
        params.append(("oauth_callback", percent_encode(callback)))
    if verifier is not None:
        params.append(("oauth_verifier", percent_encode(verifier)))
    return params


# sign_request's text arguments: six required, then six that may be None.
_SIGN_FIELDS = (
    "method", "url", "consumer_key", "consumer_secret", "token_secret", "signature_method",
    "token", "callback", "verifier", "realm", "nonce", "timestamp",
)  # fmt: skip


def sign_request(
    method: str,
    url: str,
    *,
    consumer_key: str,
    consumer_secret: str,
    token: str | None = None,
    token_secret: str = "",
    callback: str | None = None,
    verifier: str | None = None,
    body: str | bytes | Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    content_type: str | None = None,
    realm: str | None = None,
    signature_method: str = "HMAC-SHA1",
    nonce: str | None = None,
    timestamp: str | None = None,
) -> str:
    """Return the Authorization header value for a request (RFC 5849 §3.1-§3.5.1).

    The query of ``url`` and a form body (a str/bytes body with
    ``content_type`` application/x-www-form-urlencoded, or a mapping or pairs
    of form fields) are signed; other bodies are not (§3.4.1.3.1). Token,
    callback and verifier are sent only when given; ``nonce`` and
    ``timestamp`` default to fresh ones.
    """
    _require_texts(
        _SIGN_FIELDS,
        (method, url, consumer_key, consumer_secret, token_secret, signature_method,
         token, callback, verifier, realm, nonce, timestamp),
        required=6,
    )  # fmt: skip
    sign = _signature_function(signature_method)
    key = _signing_key(consumer_secret, token_secret)
    protocol = _protocol_parameters(
        consumer_key, token, callback, verifier, signature_method, nonce, timestamp
    )
    signed = [f"{name} {value}" for name, value in protocol]
    base = _signature_base_string(method, url, signed + _encoded_body_parameters(body, content_type))
    protocol.append(("oauth_signature", percent_encode(sign(base, key))))
    return _header(protocol, realm)


def verify_request(
    method: str,
    url: str,
    authorization: str,
    *,
    consumer_secret: str,
    token_secret: str = "",
    body: str | bytes | Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    content_type: str | None = None,
) -> bool:
    """Return whether the request's signature is right (RFC 5849 §3.2).

    Recomputes the signature from the header's own parameters, the query and a
    form body, and compares in constant time. Only the signature is checked;
    timestamp, nonce and token rules are the caller's. A malformed header, or
    one without oauth_signature or oauth_signature_method, is a ValueError.
    """
    params = parse_authorization_header(authorization)
    try:
        given = params.pop("oauth_signature")
        signature_method = params["oauth_signature_method"]
    except KeyError as exc:
        raise ValueError(f"Authorization header: {exc.args[0]} is missing") from None
    params.pop("realm", None)
    encoded = _encode_pairs(params.items()) + _encoded_body_parameters(body, content_type)
    base = _signature_base_string(method, url, encoded)
    expected = signature(base, consumer_secret, token_secret, signature_method)
    return hmac.compare_digest(expected.encode(), given.encode())


# ---- Command line ----

# Known answers the selftest checks with nothing but this file. The full set,
# with sources, is in vectors/ in the repository.
_SELFTEST_BASE_STRING = (
    "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26"
    "b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26"
    "oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D"
    "137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
)
_ETRADE_SAMPLE_HEADER = (
    'OAuth\nrealm="",oauth_signature="FjoSQaFDKEDK1FJazlY3xArNflk%3D",oauth_nonce='
    '"LTg2ODUzOTQ5MTEzMTY3MzQwMzE%3D",oauth_signature_method="HMAC-SHA1",'
    'oauth_consumer_key=\u00a0"282683cc9e4b8fc81dea6bc687d46758",oauth_timestamp="1273254425",'
    'oauth_verifier="Y27X25F",oauth_token=%2FiQRgQCRGPo7Xdk6G8QDSEzX0Jsy6sKNcULcDavAGgU%3D'
)


def _selftest_cases() -> list[tuple[str, Callable[[], object], object]]:
    """Return (name, thunk, expected) known answers from RFC 5849 and E*TRADE."""
    photos = dict(
        consumer_key="dpf43f3p2l4k3l03",
        consumer_secret="kd94hf93k423kf44",
        token="nnch734d00sl2jdk",
        token_secret="pfkkdhi9sl3r4s00",
    )
    return [
        (
            "RFC 5849 §3.6 encoding",
            lambda: percent_encode("Ladies + Gentlemen\u2713"),
            "Ladies%20%2B%20Gentlemen%E2%9C%93",
        ),
        (
            "RFC 5849 §3.4.1.2 URI",
            lambda: base_string_uri("https://www.example.net:8080/?q=1"),
            "https://www.example.net:8080/",
        ),
        (
            "RFC 5849 §3.4.1.1 base string",
            lambda: signature_base_string(
                "POST",
                "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b",
                [
                    ("oauth_consumer_key", "9djdj82h48djs9d2"),
                    ("oauth_token", "kkk9d7dh3k39sjv7"),
                    ("oauth_signature_method", "HMAC-SHA1"),
                    ("oauth_timestamp", "137131201"),
                    ("oauth_nonce", "7d8f3e4a"),
                    ("c2", ""),
                    ("a3", "2 q"),
                ],
            ),
            _SELFTEST_BASE_STRING,
        ),
        (
            "OAuth Core 1.0 Appendix A signature",
            lambda: parse_authorization_header(
                sign_request(
                    "GET",
                    "http://photos.example.net/photos?file=vacation.jpg&size=original",
                    nonce="kllo9940pd9333jh",
                    timestamp="1191242096",
                    **photos,
                )
            )["oauth_signature"],
            "tR3+Ty81lMeYAr/Fid0kMTYa/WM=",
        ),
        (
            "RFC 5849 §3.4.4 PLAINTEXT",
            lambda: signature("ignored", "kd94hf93k423kf44", "", "PLAINTEXT"),
            "kd94hf93k423kf44&",
        ),
        (
            "E*TRADE Get Access Token sample header",
            lambda: parse_authorization_header(_ETRADE_SAMPLE_HEADER)["oauth_token"],
            "/iQRgQCRGPo7Xdk6G8QDSEzX0Jsy6sKNcULcDavAGgU=",
        ),
    ]


def _selftest() -> int:
    """Run the embedded known answers; print one summary line; return 0 or 1."""
    failed = []
    cases = _selftest_cases()
    for name, thunk, expected in cases:
        try:
            ok = thunk() == expected
        except Exception:  # a crash is a failure to report, not to raise
            ok = False
        if not ok:
            failed.append(name)
    if failed:
        print(f"selftest: {len(failed)} of {len(cases)} known answers FAILED: {'; '.join(failed)}")
        return 1
    print(f"selftest: {len(cases)} of {len(cases)} known answers passed (oauth1_etrade {__version__})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    import argparse  # noqa: PLC0415 (imported here: `import oauth1_etrade` stays light)

    parser = argparse.ArgumentParser(
        prog="oauth1_etrade", description="OAuth 1.0a client for the E*TRADE API."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    commands.add_parser("selftest", help="check RFC 5849 and E*TRADE known answers with this file alone")
    args = parser.parse_args(argv)
    if args.command == "selftest":
        return _selftest()
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

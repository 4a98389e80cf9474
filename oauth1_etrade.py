"""OAuth 1.0a (RFC 5849) client for the E*TRADE API, in one standard-library module.

oauth1_etrade signs requests exactly as RFC 5849 says, and knows E*TRADE's token
rules. It needs nothing but the Python standard library (3.9 or newer, CPython or
PyPy): to vendor it, copy this one file into your project.

The file in three parts, each readable without the next:
    Part I. RFC 5849 (no I/O, no clock unless asked)
        constants and errors
        §3.6 percent encoding
        §3.4.1.2 base string URI, §3.4.1.3 request parameters, §3.4.1.1 signature base string
        §3.4.2-3.4.4 signature methods
        §3.5.1 Authorization header (build and parse)
        §3.3 nonce and timestamp
        sign and verify
        known answers (the selftest)
    Part II. The E*TRADE client
        endpoints and rules (rate limits, what E*TRADE's answers say and what to do),
        token lifetime (token_state), requests and answers as values,
        one call decided from values (_CallCore, no I/O: h11's shape),
        token store (safe in shared folders),
        transport (http.client, kept alive, proxies, pacing),
        the session that drives them (sockets, store, locks, clock),
        adapters for urllib, requests and httpx
    Part III. Tools that nothing above needs
        offline E*TRADE emulator, command line

References:
    RFC 5849, The OAuth 1.0 Protocol: https://www.rfc-editor.org/rfc/rfc5849
    E*TRADE authorization API: https://apisb.etrade.com/docs/api/authorization/get_access_token.html

Copyright (c) 2026 the oauth1_etrade developers.
Licence: MIT (the LICENSE file of the repository; https://opensource.org/license/mit).
Keep these two lines in a vendored copy.
"""

from __future__ import annotations

import binascii
import io
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from urllib.parse import quote as _url_quote
from urllib.parse import unquote, unquote_to_bytes, urlsplit

# Every other module is imported inside the function that needs it, not here:
# `import oauth1_etrade` stays light for a caller that only signs (README,
# "Performance": json, hmac, secrets, ssl, socket, http.client, threading,
# logging, argparse and the rest cost milliseconds each, and most callers need
# a few of them). The linter's import-outside-top-level rule is off for this
# file in pyproject.toml for this reason.

__version__ = "0.1.0"

__all__ = [
    # errors
    "OAuthError",
    "LoginRequiredError",
    "TokenExpiredError",
    "TokenInactiveError",
    "TokenRejectedError",
    "SignatureInvalidError",
    "TimestampRefusedError",
    "ConsumerKeyError",
    "VerifierInvalidError",
    "NonceUsedError",
    "RateLimitError",
    "TransportError",
    "TokenFileError",
    "UsageError",
    "InvalidValueError",
    "InvalidTypeError",
    # RFC 5849 core
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
    # E*TRADE flow
    "ETradeSession",
    "Response",
    "Token",
    "TokenStore",
    "OAuth1Auth",
    "access_token_expiry",
    "token_state",
    "MISSING",
    "ACTIVE",
    "IDLE",
    "EXPIRED",
    "request_token_time_left",
    "default_token_path",
    # constants (read-only: str, int, frozenset, MappingProxyType)
    "UNRESERVED",
    "DEFAULT_PORTS",
    "FORM_CONTENT_TYPE",
    "SIGNATURE_METHODS",
    "PRODUCTION_API_BASE",
    "SANDBOX_API_BASE",
    "OAUTH_BASE",
    "AUTHORIZE_URL",
    "REQUEST_TOKEN_LIFETIME",
    "IDLE_LIMIT",
    "TIMESTAMP_TOLERANCE",
    "ETRADE_RATE_LIMITS",
    "MAX_TOKEN_RESPONSE",
    "MAX_API_RESPONSE",
    "RESENDABLE_METHODS",
    "MAX_IDLE_CONNECTIONS",
    "MAX_TOKEN_FILE",
    "LOCK_TIMEOUT",
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_LOGIN_NEEDED",
    # offline emulator and command line
    "Emulator",
    "ManualClock",
    "main",
]

# ============================================================================
# Part I. RFC 5849, The OAuth 1.0 Protocol
# Constants and the error hierarchy, then the rules in the RFC's order of use:
# §3.6 encoding, §3.4.1 base string, §3.4.2-3.4.4 signatures, §3.5.1 header,
# §3.3 nonce and timestamp, sign and verify; the selftest's known answers last.
# No I/O, and no clock unless asked.
# ============================================================================

# ---- Constants ----

#: RFC 5849 §3.6: the characters that are never percent-encoded.
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"

#: RFC 5849 §3.4.1.2: ports left out of the base string URI.
DEFAULT_PORTS: Mapping[str, int] = MappingProxyType({"http": 80, "https": 443})

#: RFC 5849 §3.4.1.3.1: the only body content type whose parameters are signed.
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

# RFC 3986 §3.3 path characters (pchar and "/") plus "%" so that escapes already
# in a path stay as they are; anything else in a path is escaped for signing.
_PATH_SAFE = "/%:@!$&'()*+,;=" + "-._~"

# `typing` costs 5 ms to import and is needed only by type checkers (which
# take any name TYPE_CHECKING as true), so the aliases live behind this flag.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    import http.client
    import http.server
    import queue
    import socket
    import ssl
    from typing import Any, NoReturn, Union

    # A parameter is a name/value pair; values decoded from a query or form
    # body are bytes when not valid UTF-8 (they are signed as those bytes).
    Text = Union[str, bytes]
    Param = tuple[Text, Text]
    # A kept-alive connection's (scheme, host, port).
    Origin = tuple[str, str, int]


# ---- Errors ----


class OAuthError(Exception):
    """A failure reported by (or about) the OAuth provider.

    ``status`` is the HTTP status or None; ``problem`` is the provider's
    ``oauth_problem`` (RFC 5849 problem reporting, as E*TRADE sends it) or None;
    ``fields`` holds every problem-reporting field of the answer (e.g.
    ``oauth_acceptable_timestamps``); ``code`` and ``server_message`` are the
    ``code`` and ``message`` of E*TRADE's ``Error`` envelope (or the message
    of its error page), or None. ``summary`` is what happened, and ``advice``
    names what to do about it (the message says both; the command line words
    the advice its own way). The message is one line and never contains a
    secret.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        problem: str | None = None,
        code: int | None = None,
        server_message: str | None = None,
        fields: Mapping[str, str] | None = None,
        summary: str | None = None,
        advice: str | None = None,
    ):
        super().__init__(message)
        self.summary = message if summary is None else summary
        self.advice = advice
        self.status = status
        self.problem = problem
        self.code = code
        self.server_message = server_message
        self.fields: Mapping[str, str] = dict(fields or {})


class LoginRequiredError(OAuthError):
    """Only a new login in a browser helps: there is no access token, or it expired, or the
    provider rejected or revoked it. The command line exits 3 for it."""


class TokenExpiredError(LoginRequiredError):
    """The token is past its lifetime: an access token at midnight US Eastern, a
    request token after 5 minutes (E*TRADE: Get Access Token). Log in again."""


class TokenInactiveError(OAuthError):
    """The access token is inactive after 2 hours without requests; renew it
    (E*TRADE: Get Access Token, "Token lifespan")."""


class TokenRejectedError(LoginRequiredError):
    """The provider rejected or revoked the token (token_rejected, token_revoked). Log in again."""


class SignatureInvalidError(OAuthError):
    """The provider could not verify the signature (signature_invalid, signature_method_rejected)."""


class TimestampRefusedError(OAuthError):
    """The timestamp was refused (timestamp_refused), even after a retry with the server's clock."""


class ConsumerKeyError(OAuthError):
    """The consumer key is unknown or rejected (consumer_key_unknown, consumer_key_rejected)."""


class VerifierInvalidError(OAuthError):
    """The verifier code is wrong or already used (verifier_invalid)."""


class NonceUsedError(OAuthError):
    """The provider saw this nonce before (nonce_used): a replayed request or a broken nonce source."""


class RateLimitError(OAuthError):
    """The provider said the rate limit was exceeded: E*TRADE's HTTP 400 page ("Number of requests
    exceeded the rate limit set", E*TRADE: Rate Limits), or 429 Too Many Requests. ``retry_after``
    is the wait it asked for in seconds (a valid Retry-After, RFC 9110 §10.2.3), or None. Never
    retried automatically."""

    def __init__(self, message: str, *, retry_after: float | None = None, **details: Any):
        super().__init__(message, **details)
        self.retry_after = retry_after


class TransportError(OAuthError):
    """The request got no usable HTTP answer: connection, timeout, TLS, redirect or a bad body."""


class TokenFileError(OAuthError, ValueError):
    """The token file (or its lock, or a pending-login file) cannot be read or written, or is
    not safe to use; the message names the file. Also a ValueError, as it always was."""


class UsageError(OAuthError):
    """The module was called in a way it cannot serve, and nothing was sent: a wrong argument,
    or a step out of order (an authorize URL before a request token). Fix the call."""


class InvalidValueError(UsageError, ValueError):
    """An argument's value is wrong (an empty key, a URL that is not http(s), a header with a
    line break); the message names the argument. Also a ValueError, which callers catch."""


class InvalidTypeError(UsageError, TypeError):
    """An argument has the wrong type; the message names it and the type received (as
    CPython's hmac does). Also a TypeError, which callers catch."""


def _require_str(label: str, value: object) -> str:
    """Return ``value`` if it is a str, else raise a TypeError naming ``label``."""
    if not isinstance(value, str):
        raise InvalidTypeError(f"{label}: expected str, but got {type(value).__name__!r}")
    return value


def _has_controls(text: str) -> bool:
    """Return whether ``text`` holds CR, LF or NUL (header injection)."""
    return "\r" in text or "\n" in text or "\0" in text


def _reject_controls(label: str, value: str) -> None:
    """Raise ValueError if ``value`` holds CR, LF or NUL (header injection)."""
    if _has_controls(value):
        raise InvalidValueError(f"{label} contains a CR, LF or NUL character; refusing to sign it")


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
    if "%0" in encoded and ("%0D" in encoded or "%0A" in encoded or "%00" in encoded):
        raise InvalidValueError(f"{label} contains a CR, LF or NUL character; refusing to sign it")


# ---- §3.6 Percent encoding ----

_UNRESERVED_BYTES = UNRESERVED.encode("ascii")
#: Byte -> (the byte, its "%XX" escape in uppercase hex) (§3.6), replace()'s arguments.
_ESCAPES = {byte: (bytes((byte,)), b"%%%02X" % byte) for byte in range(256)}


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
        try:
            data = value.encode("utf-8")  # §3.6 item 1: text is encoded as UTF-8 octets
        except UnicodeEncodeError as exc:
            raise InvalidValueError(
                f"percent_encode: text is not valid Unicode (lone surrogate at index {exc.start})"
            ) from None
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise InvalidTypeError(f"percent_encode: expected str or bytes, but got {type(value).__name__!r}")
    # §3.6 item 2: the unreserved characters MUST NOT be encoded. Deleting them
    # leaves the bytes to escape, found in one C pass (callgrind: 20 times
    # cheaper per character than a 256-entry str.translate table).
    escaped = data.translate(None, _UNRESERVED_BYTES)
    if not escaped:
        return value if isinstance(value, str) else data.decode("ascii")
    # §3.6 item 3: all other characters MUST be encoded, as "%" and two
    # uppercase hex digits. One C-level replace per distinct byte, "%" first
    # (the other escapes bring in "%").
    distinct = set(escaped)
    if 0x25 in distinct:
        distinct.discard(0x25)
        data = data.replace(b"%", b"%25")
    for byte in distinct:
        data = data.replace(*_ESCAPES[byte])
    return data.decode("ascii")


def _percent_encode_each(texts: Sequence[Text]) -> list[str]:
    """Return [percent_encode(t) for t in texts], encoding them all in one call where it can.

    Each call costs hundreds of instructions before its first character, and
    signing encodes a dozen short names and values: texts that hold no LF are
    joined with LF, which §3.6 always writes "%0A", encoded at once and split.
    """
    try:
        joined = "\n".join(texts)  # type: ignore[arg-type]
    except TypeError:  # bytes among them (or a wrong type, which percent_encode names)
        return [percent_encode(text) for text in texts]
    encoded = percent_encode(joined).split("%0A")
    if len(encoded) != len(texts):  # an LF inside a text: one by one
        return [percent_encode(text) for text in texts]
    return encoded


# Form decoding, for the query (§3.4.1.3.1 item 2) and a form body (item 3):
# W3C HTML 4.01 §17.13.4.1, application/x-www-form-urlencoded.


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


def _form_encode(pairs: Iterable[tuple[str, str]]) -> str:
    """Return name/value pairs as form text, each encoded by §3.6 (a valid form encoding: only
    unreserved characters and escapes), so that what is sent is exactly what is signed."""
    return "&".join(f"{percent_encode(name)}={percent_encode(value)}" for name, value in pairs)


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


# ---- §3.4.1.2 Base string URI ----

# RFC 3986 §3.3 path characters (pchar and "/") plus "%" so that escapes already
# in a path stay as they are; anything else in a path is escaped for signing.
_PATH_SAFE_BYTES = (_PATH_SAFE + UNRESERVED).encode("ascii")


def _port_of(parts: object) -> int | None:
    """Return urlsplit's port, or raise ValueError naming the url (RFC 3986 §3.2.3)."""
    try:
        return parts.port  # type: ignore[attr-defined, no-any-return]
    except ValueError:
        raise InvalidValueError("url: port is not a number from 0 to 65535") from None


def base_string_uri(url: str) -> str:
    """Return the base string URI of ``url`` (RFC 5849 §3.4.1.2).

    Scheme and host are lowercased, the default port (80 for http, 443 for
    https) is left out and other ports kept, query and fragment are dropped,
    and an empty path becomes "/".

    >>> base_string_uri("http://EXAMPLE.COM:80/r%20v/X?id=123")
    'http://example.com/r%20v/X'
    """
    _require_str("url", url)
    _reject_controls("url", url)
    parts = urlsplit(url)
    # 1. The scheme and host MUST be in lowercase.
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidValueError(f"url: scheme must be http or https, not {parts.scheme!r}")
    netloc = parts.netloc
    if "@" in netloc or "[" in netloc or "%" in netloc:  # userinfo, IPv6, a zone: urlsplit's parser
        host, port = parts.hostname, _port_of(parts)
    else:  # host[:port], read directly: 4 times cheaper than .hostname and .port (callgrind)
        host, _, port_text = netloc.partition(":")
        host = host.lower()
        if not port_text:
            port = None
        elif port_text.isascii() and port_text.isdigit():
            port = int(port_text)
        else:
            port = _port_of(parts)  # not a number: urlsplit's error
    if not host:
        raise InvalidValueError("url: has no host")
    if ":" in host:
        host = f"[{host}]"  # RFC 3986 §3.2.2: an IPv6 literal stays in brackets
    # 3. The port MUST be included if it is not the default port for the scheme.
    if port is not None and port != DEFAULT_PORTS[scheme]:
        if port > 65535:
            raise InvalidValueError("url: port is not a number from 0 to 65535")
        host = f"{host}:{port}"
    # 2. The host and port values MUST match the content of the HTTP Host header.
    # (The URL the request is sent to gives both.) An empty path is "/" (RFC 3986 §6.2.3).
    path = parts.path or "/"
    if path.encode("utf-8", "surrogatepass").translate(None, _PATH_SAFE_BYTES):
        # NOTE: RFC 5849 only shows this in its "r%20v" example (oauthlib #650):
        # a space or non-ASCII character in the path is signed percent-encoded.
        path = _url_quote(path, safe=_PATH_SAFE)
    return f"{scheme}://{host}{path}"


# ---- §3.4.1.3 Request parameters ----


def normalize_parameters(params: Iterable[tuple[Text, Text]]) -> str:
    """Return the normalized request parameters (RFC 5849 §3.4.1.3.2).

    Names and values are encoded (§3.6), sorted by name then value, joined
    as name=value with "&".

    >>> normalize_parameters([("b", "2"), ("a", "x y"), ("a", "1")])
    'a=1&a=x%20y&b=2'
    """
    pairs = list(params)
    if not pairs:
        return ""
    try:
        names, values = zip(*pairs)
    except (TypeError, ValueError):
        raise InvalidTypeError("normalize_parameters: expected (name, value) pairs") from None
    # 1. First, the name and value of each parameter are encoded (Section 3.6).
    #    (All in one call: names, then values.)
    encoded = _percent_encode_each(names + values)
    # 2. The parameters are sorted by name, using ascending byte value
    #    ordering. If two or more parameters share the same name, they are
    #    sorted by their value.
    #    Each pair is sorted as one string "name value": §3.6 output holds no
    #    space, which sorts below all it can hold, so this is the order of
    #    (name, value), and thousands of pairs make no tuples for the garbage
    #    collector to scan (the per-parameter cost stays flat; benchmarks/).
    ordered = sorted(map("{} {}".format, encoded[: len(names)], encoded[len(names) :]))
    # 3. The name of each parameter is concatenated to its corresponding
    #    value using an "=" character (ASCII code 61) as a separator, even if
    #    the value is empty.
    # 4. The sorted name/value pairs are concatenated together into a single
    #    string by using an "&" character (ASCII code 38) as separator.
    normalized = "&".join(ordered).replace(" ", "=")
    _reject_encoded_controls("a parameter", normalized)
    return normalized


def _is_form(content_type: str | None) -> bool:
    """Return whether a Content-Type is application/x-www-form-urlencoded."""
    if content_type is None:
        return False
    _require_str("content_type", content_type)
    return content_type.partition(";")[0].strip().lower() == FORM_CONTENT_TYPE


def _field_pairs(label: str, fields: object) -> list[tuple[str, str]]:
    """Return a mapping or a list/tuple of (name, value) str pairs as a list."""
    if isinstance(fields, Mapping):
        items: Iterable[object] = fields.items()
    elif isinstance(fields, (list, tuple)):
        items = fields
    else:
        raise InvalidTypeError(
            f"{label}: expected str, bytes, a mapping or a list of (name, value) pairs, "
            f"but got {type(fields).__name__!r}"
        )
    pairs = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != 2:
            raise InvalidTypeError(f"{label}: each field must be a (name, value) pair")
        name, value = item
        pairs.append((_require_str(f"{label} field name", name), _require_str(f"{label} field value", value)))
    return pairs


def _body_parameters(body: object, content_type: str | None) -> list[Param]:
    """Return the body parameters that are signed, decoded (§3.4.1.3.1 item 3).

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
                raise InvalidValueError("body: a form-encoded body must be UTF-8 text") from None
        _reject_controls("body", body)
        return _parse_form(body)
    if content_type is not None and not _is_form(content_type):
        raise InvalidValueError(
            f"body: fields given as pairs are form fields; their content type must be {FORM_CONTENT_TYPE}"
        )
    return _field_pairs("body", body)  # type: ignore[return-value]


# ---- §3.4.1.1 Signature base string ----


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
    _require_str("method", method)
    _reject_controls("method", method)
    if not method:
        raise InvalidValueError("method: must not be empty")
    uri = base_string_uri(url)
    # §3.4.1.3.1: the parameters from the header or body (params), then the
    # query (item 1), decoded as a form (item 2); "oauth_signature" MUST be
    # excluded, and the header's "realm" too.
    signed = [pair for pair in params if pair[0] != "realm" and pair[0] != "oauth_signature"]
    query = url.partition("#")[0].partition("?")[2]
    if query:
        signed += [pair for pair in _parse_form(query) if pair[0] != "oauth_signature"]
    # 1. The HTTP request method in uppercase.
    # 2. An "&" character (ASCII code 38).
    # 3. The base string URI from Section 3.4.1.2, after being encoded (Section 3.6).
    # 4. An "&" character (ASCII code 38).
    # 5. The request parameters as normalized in Section 3.4.1.3.2, after being
    #    encoded (Section 3.6).
    return "&".join(_percent_encode_each((method.upper(), uri, normalize_parameters(signed))))


# ---- §3.4.2-3.4.4 Signature methods ----


def _hmac(digest: str, base_string: str, key: str) -> str:
    """Return base64(HMAC-<digest>(key, base string)) (RFC 5849 §3.4.2)."""
    # `hmac` loads OpenSSL (5 ms); imported where used, it costs `import
    # oauth1_etrade` nothing and each signature a dictionary look-up.
    import hmac

    return binascii.b2a_base64(
        hmac.digest(key.encode(), base_string.encode(), digest), newline=False
    ).decode()


def _hmac_sha1(base_string: str, key: str) -> str:
    """Return the HMAC-SHA1 signature (RFC 5849 §3.4.2)."""
    return _hmac("sha1", base_string, key)


def _hmac_sha256(base_string: str, key: str) -> str:
    """Return the HMAC-SHA256 signature (§3.4.2 with SHA-256)."""
    return _hmac("sha256", base_string, key)


def _hmac_sha512(base_string: str, key: str) -> str:
    """Return the HMAC-SHA512 signature (§3.4.2 with SHA-512)."""
    return _hmac("sha512", base_string, key)


def _plaintext(base_string: str, key: str) -> str:
    """Return the key itself (RFC 5849 §3.4.4)."""
    return key


#: Signature method name -> function(base string, key) -> signature. RFC 5849
#: defines HMAC-SHA1 (§3.4.2) and PLAINTEXT (§3.4.4); HMAC-SHA256 and
#: HMAC-SHA512 apply §3.4.2 with those hashes, as NetSuite and others ask.
SIGNATURE_METHODS: Mapping[str, Callable[[str, str], str]] = MappingProxyType(
    {
        "HMAC-SHA1": _hmac_sha1,
        "HMAC-SHA256": _hmac_sha256,
        "HMAC-SHA512": _hmac_sha512,
        "PLAINTEXT": _plaintext,
    }
)


def _signature_function(signature_method: str) -> Callable[[str, str], str]:
    """Return the function for a signature method name, or raise ValueError."""
    _require_str("signature_method", signature_method)
    try:
        return SIGNATURE_METHODS[signature_method]
    except KeyError:
        pass
    if signature_method == "RSA-SHA1":
        raise InvalidValueError(
            "signature_method: RSA-SHA1 (RFC 5849 §3.4.3) needs an RSA key library, "
            "which is outside this standard-library-only module; E*TRADE accepts HMAC-SHA1 only"
        )
    raise InvalidValueError(
        f"signature_method: unsupported {signature_method!r}; use one of {', '.join(SIGNATURE_METHODS)}"
    )


def signature(
    base_string: str,
    consumer_secret: str,
    token_secret: str = "",
    signature_method: str = "HMAC-SHA1",
) -> str:
    """Return the signature of a base string (RFC 5849 §3.4.2, §3.4.4).

    HMAC-SHA1, HMAC-SHA256 and HMAC-SHA512 give base64 text; PLAINTEXT gives
    the key. The key is ``encode(consumer_secret) & encode(token_secret)``.
    The value is returned before it is percent-encoded for the header.

    >>> signature("GET&x&", "kd94hf93k423kf44", "", "PLAINTEXT")
    'kd94hf93k423kf44&'
    """
    method = _signature_function(signature_method)
    _require_str("base_string", base_string)
    _require_str("consumer_secret", consumer_secret)
    _require_str("token_secret", token_secret)
    # §3.4.2: the key is the encoded consumer secret, an "&" character, and
    # the encoded token secret (an empty string when there is none).
    key = "&".join(_percent_encode_each((consumer_secret, token_secret)))
    return method(base_string, key)


# ---- §3.5.1 Authorization header ----

# The header is an RFC 2617 credentials value (RFC 7235 §2.1):
#   credentials    = auth-scheme 1*SP #auth-param
#   auth-param     = token BWS "=" BWS ( token / quoted-string )
#   token          = 1*tchar
#   tchar          = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "."
#                  / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
#   quoted-string  = DQUOTE *( qdtext / quoted-pair ) DQUOTE
#   qdtext         = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
#   quoted-pair    = "\" ( HTAB / SP / VCHAR / obs-text )
# (RFC 7230 §3.2.6). So a quoted value holds no control character but HTAB,
# and an unquoted value is at least one tchar.
# NOTE: E*TRADE's documented sample breaks the line after "OAuth", has a
# no-break space (U+00A0) after "oauth_consumer_key=" and an unquoted
# oauth_token value; so line breaks, white space including U+00A0 around "="
# and ",", and bare token values are accepted.
_WS = r"[ \t\r\n\u00a0]"
_LWS = _WS + "*"
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]"  # tchar
_QDTEXT = r'[^"\\\x00-\x08\x0a-\x1f\x7f]'
_QUOTED_PAIR = r"\\[^\x00-\x08\x0a-\x1f\x7f]"
# Compiled on first use (re caches them): signing never parses a header, so
# `import oauth1_etrade` does not pay for these.
_SCHEME = "(?i)" + _LWS + "OAuth(?:" + _WS + r"+|\Z)"
_SEPARATOR = r"[ \t\r\n\u00a0,]*"
_AUTH_PARAM = f"({_TOKEN}+){_LWS}={_LWS}" + f'(?:"((?:{_QDTEXT}|{_QUOTED_PAIR})*)"|({_TOKEN}+))' + _LWS
_UNQUOTE = r"\\([\s\S])"  # a quoted-pair stands for its second character


def _quote_realm(realm: str) -> str:
    """Return ``realm`` as an RFC 2617 quoted-string (not percent-encoded).

    qdtext and quoted-pair hold no control character but HTAB: any other is a ValueError.
    """
    _require_str("realm", realm)
    _reject_controls("realm", realm)
    if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", realm):
        raise InvalidValueError(
            "realm contains a control character; a quoted-string cannot hold it (RFC 7230 §3.2.6)"
        )
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
    import itertools  # cheap: built in

    items = list(params.items() if isinstance(params, Mapping) else params)
    texts = list(itertools.chain.from_iterable(items))
    try:
        "".join(texts)  # one C-level check that every name and value is a str
    except TypeError:
        for name, value in items:
            _require_str("parameter name", name)
            _require_str(name, value)
    encoded = _percent_encode_each(texts)
    names, values = encoded[0::2], encoded[1::2]
    if "realm" in names:
        raise InvalidValueError("authorization_header: pass realm as realm=, not as a parameter")
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise InvalidValueError(f"authorization_header: parameter {twice!r} given twice (RFC 5849 §3.1)")
    # 1. Parameter names and values are encoded per Parameter Encoding (Section 3.6).
    # 2. Each parameter's name is immediately followed by an "=" character
    #    (ASCII code 61), a '"' character (ASCII code 34), the parameter value
    #    (MAY be empty), and another '"' character (ASCII code 34).
    # 3. Parameters are separated by a "," character (ASCII code 44) and
    #    OPTIONAL linear whitespace per [RFC2617].
    # 4. The OPTIONAL "realm" parameter MAY be added and interpreted per
    #    [RFC2617] section 1.2.
    fields = ",".join(map('{}="{}"'.format, names, values))
    _reject_encoded_controls("a parameter", fields)
    if realm is not None:
        fields = f"realm={_quote_realm(realm)}" + ("," + fields if fields else "")
    return "OAuth " + fields


def _decode_header_text(name: str, text: str) -> str:
    """Return a header name or value percent-decoded as UTF-8 (§3.5.1)."""
    if "%" not in text:
        return text
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise InvalidValueError(f"Authorization header: {name!r} is not percent-encoded UTF-8") from None


def _auth_param_problem(value: str, pos: int) -> str:
    """Return what is wrong with the auth-param that should start at ``pos``, and where."""
    name = re.match(f"({_TOKEN}+){_LWS}={_LWS}", value[pos:])
    if not name:
        return f"expected name=value at character {pos}"
    start = pos + name.end()
    if start == len(value) or value[start] == ",":
        return f"an empty unquoted value for {name.group(1)!r} at character {start} (RFC 7230 §3.2.6)"
    if value[start] != '"':
        return f"expected name=value at character {pos}"
    closed = re.match(r'"(?:[^"\\]|\\[\s\S])*"', value[start:])
    if not closed:
        return f"an unterminated quoted value at character {start}"
    where = f"the quoted value of {name.group(1)!r} at character {start}"
    return f"a control character in {where} (RFC 7230 §3.2.6)"


def parse_authorization_header(value: str) -> dict[str, str]:
    """Return the parameters of an OAuth Authorization header (RFC 5849 §3.5.1).

    Names and values are percent-decoded; ``realm`` is included as written
    (a quoted-string, not percent-encoded). The scheme is case-insensitive;
    white space and line breaks around "=" and ",", and unquoted values, are
    accepted, as in E*TRADE's documented sample. Duplicates, a missing
    ``OAuth`` scheme, unterminated quotes, a control character inside a
    quoted value, an empty unquoted value and other garbage raise ValueError.

    >>> parse_authorization_header('OAuth realm="", oauth_token= a%2Fb%3D')
    {'realm': '', 'oauth_token': 'a/b='}
    """
    _require_str("Authorization header", value)
    match = re.match(_SCHEME, value)
    if not match:
        raise InvalidValueError("Authorization header: the scheme is not 'OAuth'")
    separator, auth_param = re.compile(_SEPARATOR), re.compile(_AUTH_PARAM)
    result: dict[str, str] = {}
    pos, end = match.end(), len(value)
    while True:
        pos = separator.match(value, pos).end()  # type: ignore[union-attr]
        if pos == end:
            return result
        param = auth_param.match(value, pos)
        if not param:
            raise InvalidValueError(f"Authorization header: {_auth_param_problem(value, pos)}")
        pos = param.end()
        if pos < end and value[pos] != ",":
            what = "an unterminated quoted value" if value[pos] == '"' else "a missing ','"
            raise InvalidValueError(f"Authorization header: {what} at character {pos}")
        raw_name, quoted, bare = param.groups()
        raw_value = bare if quoted is None else re.sub(_UNQUOTE, r"\1", quoted)
        name = _decode_header_text(raw_name, raw_name)
        if name in result:
            raise InvalidValueError(f"Authorization header: parameter {name!r} appears twice (RFC 5849 §3.1)")
        result[name] = raw_value if name == "realm" else _decode_header_text(name, raw_value)


# ---- §3.3 Nonce and timestamp ----


def make_nonce() -> str:
    """Return a fresh nonce: 128 random bits, URL-safe text (RFC 5849 §3.3)."""
    import secrets  # here, not at the top: it imports `random`, 2 ms

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
    _signature_function(signature_method)  # an unknown method fails before any work
    # §3.1: the protocol parameters. oauth_version is OPTIONAL, "1.0" when
    # present; it is sent because common servers expect it (README).
    protocol = [
        ("oauth_consumer_key", consumer_key),
        ("oauth_signature_method", signature_method),
        ("oauth_timestamp", make_timestamp() if timestamp is None else timestamp),
        ("oauth_nonce", make_nonce() if nonce is None else nonce),
        ("oauth_version", "1.0"),
    ]
    for name, value in (("oauth_token", token), ("oauth_callback", callback), ("oauth_verifier", verifier)):
        if value is not None:
            protocol.append((name, value))
    # §3.4: the signature of the base string of the protocol parameters, the
    # query and a form body; §3.5.1: sent in the Authorization header.
    base = signature_base_string(method, url, [*protocol, *_body_parameters(body, content_type)])
    protocol.append(("oauth_signature", signature(base, consumer_secret, token_secret, signature_method)))
    return authorization_header(protocol, realm)


def verify_request(
    method: str,
    url: str,
    authorization: str | None,
    *,
    consumer_secret: str,
    token_secret: str = "",
    body: str | bytes | Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    content_type: str | None = None,
) -> bool:
    """Return whether the request's signature is right (RFC 5849 §3.2).

    Recomputes the signature from the protocol parameters, the query and a
    form body, and compares in constant time. The protocol parameters are
    the Authorization header's (§3.5.1); with ``authorization`` None they are
    the ``oauth_*`` parameters of the form body (§3.5.2) or the query
    (§3.5.3), which are signed where they are. Only the signature is checked;
    timestamp, nonce and token rules are the caller's. A malformed header, or
    no oauth_signature or oauth_signature_method, is a ValueError.
    """
    body_params = _body_parameters(body, content_type)
    if authorization is None:
        query = _parse_form(url.partition("#")[0].partition("?")[2])
        params = {n: v for n, v in [*query, *body_params] if isinstance(n, str) and n.startswith("oauth_")}
        header_params: list[Param] = []
        where = "the query or body"
    else:
        params = parse_authorization_header(authorization)  # type: ignore[assignment]
        header_params = list(params.items())
        where = "Authorization header"
    try:
        given = params["oauth_signature"]
        signature_method = params["oauth_signature_method"]
    except KeyError as exc:
        raise InvalidValueError(f"{where}: {exc.args[0]} is missing") from None
    if not isinstance(given, str) or not isinstance(signature_method, str):
        return False
    # (signature_base_string leaves oauth_signature and the header's realm out, §3.4.1.3.1.)
    base = signature_base_string(method, url, [*header_params, *body_params])
    expected = signature(base, consumer_secret, token_secret, signature_method)
    import hmac  # see _hmac

    return hmac.compare_digest(expected.encode(), given.encode())


# ---- Known answers (the selftest) ----

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


# ============================================================================
# Part II. The E*TRADE client
# E*TRADE's rules and one call's decisions as pure functions (no I/O), then what does
# I/O: token store, transport (http.client, kept alive), the session that drives the
# decisions, adapters for urllib, requests and httpx. Uses Part I; needs nothing below.
# ============================================================================

# ---- E*TRADE: endpoints and rules ----

#: E*TRADE API hosts (E*TRADE: Get Access Token and the API reference's base URLs).
PRODUCTION_API_BASE = "https://api.etrade.com"
SANDBOX_API_BASE = "https://apisb.etrade.com"
#: The /oauth/* endpoints live on the production host in both environments, as
#: E*TRADE's own sample client has it (sandbox keys are accepted there).
OAUTH_BASE = "https://api.etrade.com"
#: E*TRADE: Authorize Application.
AUTHORIZE_URL = "https://us.etrade.com/e/t/etws/authorize"
#: E*TRADE: the request token expires after five minutes.
REQUEST_TOKEN_LIFETIME = 5 * 60
#: E*TRADE: Get Access Token, "if the application does not make any requests
#: for two hours, the access token is inactivated".
IDLE_LIMIT = 2 * 60 * 60
#: E*TRADE: the timestamp "must be accurate to within five minutes".
TIMESTAMP_TOLERANCE = 5 * 60
#: Token endpoints answer a few hundred bytes; anything beyond this is refused.
MAX_TOKEN_RESPONSE = 1 << 20
#: API answers larger than this are refused.
MAX_API_RESPONSE = 64 << 20

_OAUTH_PATHS: Mapping[str, str] = MappingProxyType(
    {
        "request_token": "/oauth/request_token",
        "access_token": "/oauth/access_token",
        "renew_access_token": "/oauth/renew_access_token",
        "revoke_access_token": "/oauth/revoke_access_token",
    }
)

#: E*TRADE: Rate Limits, per consumer key and module: (requests per second,
#: requests per hour). A quote of up to 25 symbols is one request.
ETRADE_RATE_LIMITS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {"accounts": (2, 7000), "market": (4, 14000), "order": (2, 7000)}
)


def _api_module(path: str) -> str | None:
    """Return the module of an API path that E*TRADE's rate limits count, or None.

    E*TRADE's API reference: Order is /v1/accounts/{accountIdKey}/orders...,
    Accounts the rest of /v1/accounts/..., Market /v1/market/...; the
    /oauth/* endpoints and other modules (alerts) have no published limit.
    """
    segments = [segment.partition(".")[0] for segment in path.split("/")]
    if segments[1:3] == ["v1", "accounts"]:
        return "order" if "orders" in segments[3:] else "accounts"
    if segments[1:3] == ["v1", "market"]:
        return "market"
    return None


def _rate_limits(changes: Mapping[str, tuple[int, int]] | None) -> dict[str, tuple[int, int]]:
    """Return E*TRADE's published rate limits with ``changes`` (module -> (per second, per hour))."""
    limits = dict(ETRADE_RATE_LIMITS)
    if changes is None:
        return limits
    if not isinstance(changes, Mapping):
        raise InvalidTypeError(f"rate_limits: expected a mapping, but got {type(changes).__name__!r}")
    for module, pair in changes.items():
        if module not in limits:
            raise InvalidValueError(
                f"rate_limits: unknown module {module!r}; expected one of {sorted(limits)}"
            )
        if (
            not isinstance(pair, tuple)
            or len(pair) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in pair)
        ):
            raise InvalidValueError(
                f"rate_limits[{module!r}]: expected (per second, per hour), two positive ints"
            )
        limits[module] = pair
    return limits


# What the user should do about a failure, in the library's words (the one
# table: errors carry its key as .advice; the command line words some of them
# as commands to run, _CLI_ADVICE).
_ADVICE_WORDS: Mapping[str, str] = MappingProxyType(
    {
        "log in": "log in again (get_request_token, authorize_url, get_access_token)",
        "log in first": "log in first (get_request_token, authorize_url, get_access_token)",
        "renew": "renew the access token (renew_access_token)",
        "get a request token": "call get_request_token() first",
        "check the secrets": "check the consumer secret and token secret",
        "check the clock": "check this machine's clock",
        "nonce": (
            "the provider saw this nonce before: a replayed request, or a nonce source that repeats "
            "(not a clock problem)"
        ),
        "wait": "wait before calling again",
        "check the key": "check the consumer key and the environment (sandbox or production)",
        "check the verifier": "check the verifier code and try again, or start the login again",
        # rasesh6/etrade-trading TROUBLESHOOTING.md: a callback other than oob on
        # request_token gets HTTP 400 callback_rejected,oauth_acceptable_callback=oob.
        "use oob": "E*TRADE accepts only oauth_callback=oob, even with a registered callback URL",
    }
)


def _advised(kind: type[OAuthError], summary: str, advice: str | None, **details: Any) -> OAuthError:
    """Return an error of ``kind`` whose message is ``summary`` and, in the library's words,
    what to do (``advice``, a key of _ADVICE_WORDS)."""
    message = f"{summary}; {_ADVICE_WORDS[advice]}" if advice else summary
    return kind(message, summary=summary, advice=advice, **details)


# oauth_problem -> the error a user can act on (OAuth problem reporting names,
# as E*TRADE sends them with HTTP 400/401).
_PROBLEM_ERRORS: Mapping[str, type[OAuthError]] = MappingProxyType(
    {
        "token_expired": TokenExpiredError,
        "token_inactive": TokenInactiveError,
        "token_rejected": TokenRejectedError,
        "token_revoked": TokenRejectedError,
        "token_used": TokenRejectedError,
        "signature_invalid": SignatureInvalidError,
        "signature_method_rejected": SignatureInvalidError,
        "timestamp_refused": TimestampRefusedError,
        "nonce_used": NonceUsedError,
        "consumer_key_unknown": ConsumerKeyError,
        "consumer_key_rejected": ConsumerKeyError,
        "consumer_key_refused": ConsumerKeyError,
        "verifier_invalid": VerifierInvalidError,
    }
)

# At /oauth/access_token a wrong, stale or reused verifier is answered 401
# token_rejected, not verifier_invalid (pyetrade #5): there it means the
# verifier was not accepted.
_ACCESS_TOKEN_PROBLEMS: Mapping[str, type[OAuthError]] = MappingProxyType(
    {**_PROBLEM_ERRORS, "token_rejected": VerifierInvalidError, "token_used": VerifierInvalidError}
)

# What to do about each error a provider's answer raises (keys of _ADVICE_WORDS).
_ADVICE: Mapping[type[OAuthError], str] = MappingProxyType(
    {
        TokenExpiredError: "log in",
        TokenInactiveError: "renew",
        TokenRejectedError: "log in",
        SignatureInvalidError: "check the secrets",
        TimestampRefusedError: "check the clock",
        NonceUsedError: "nonce",
        RateLimitError: "wait",
        ConsumerKeyError: "check the key",
        VerifierInvalidError: "check the verifier",
    }
)

# Problems whose advice does not follow from the error class alone.
_PROBLEM_ADVICE: Mapping[str, str] = MappingProxyType({"callback_rejected": "use oob"})


# Patterns for answers, compiled on first use (re caches them): the module's
# import stays light for callers that only sign.
# An OAuth problem-reporting field: "oauth_problem=token_rejected", joined to
# the next by "&" (a form body), "," (E*TRADE's Tomcat pages, pyetrade #55)
# or ", " with quotes (a WWW-Authenticate header).
_OAUTH_FIELD_PATTERN = r"\b(oauth_[a-z_]{1,40})=\"?([^&,\s<>\"']{0,200})"
_HTML_PATTERN = r"(?i)^\s*<(?:!doctype\s+html|html|head|title|body)\b"
# Tomcat's report: new style "<p><b>Message</b> oauth_problem=...</p>",
# old style "<p><b>message</b> <u>oauth_problem=...</u></p>" (pyetrade #52, #4).
_HTML_MESSAGE_PATTERN = r"(?is)<b>\s*message\s*</b>\s*(?:<u>)?(.{0,2000}?)(?:</u>)?\s*</p>"
_HTML_HEADING_PATTERN = r"(?is)<h1[^>]*>(.{0,2000}?)</h1>"
_HTML_TAG_PATTERN = r"(?s)<[^>]{0,2000}>"
# E*TRADE's XML Error envelope, with or without a namespace prefix (<ns2:Error>).
_XML_ERROR_PATTERN = r"(?i)<(?:[\w.-]{1,40}:)?Error\b"
_XML_CODE_PATTERN = r"(?is)<(?:[\w.-]{1,40}:)?Error\b.{0,2000}?<(?:[\w.-]{1,40}:)?code>([^<]{0,500})<"
_XML_MESSAGE_PATTERN = r"(?is)<(?:[\w.-]{1,40}:)?Error\b.{0,2000}?<(?:[\w.-]{1,40}:)?message>([^<]{0,500})<"
# E*TRADE's rate-limit page: "Number of requests exceeded the rate limit set".
_RATE_LIMIT_PATTERN = r"(?i)rate[ _-]?limit|too many requests"
# Control characters (C0, DEL, C1), line and paragraph separators, and the
# bidirectional overrides that make text read other than it is (CVE-2021-42574).
_UNSAFE_BUT_TAB_AND_LF = r"\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_DETAIL_UNSAFE_PATTERN = f"[\t\n{_UNSAFE_BUT_TAB_AND_LF}]+"
#: How much of an error answer is read for its problem and message.
_ANSWER_READ_LIMIT = 16384


def _one_line(text: str, limit: int = 200) -> str:
    """Return text from a server as one short line: control characters become spaces."""
    return re.sub(_DETAIL_UNSAFE_PATTERN, " ", text).strip()[:limit]


class _Reading:
    """What an E*TRADE answer says: the OAuth problem and its fields, E*TRADE's error code
    and message, and whether it reports the rate limit."""

    __slots__ = ("code", "fields", "message", "problem", "rate_limited")

    def __init__(self, fields: dict[str, str], code: int | None, message: str | None, rate_limited: bool):
        self.fields = fields
        problem = fields.get("oauth_problem", "")
        self.problem = problem if re.fullmatch(r"[a-z_]{1,40}", problem) else None
        self.code = code
        self.message = message
        self.rate_limited = rate_limited


def _oauth_fields(text: str) -> dict[str, str]:
    """Return the OAuth problem-reporting fields in ``text`` (first of each name, decoded).

    OAuth Problem Reporting (oauth.pbwiki.com/ProblemReporting, as E*TRADE
    uses it): oauth_problem, oauth_acceptable_timestamps, oauth_parameters_absent...
    """
    fields: dict[str, str] = {}
    for name, value in re.findall(_OAUTH_FIELD_PATTERN, text):
        fields.setdefault(name, unquote(value))
    return fields


def _error_envelope(text: str) -> tuple[int | None, str | None]:
    """Return (code, message) of E*TRADE's JSON or XML ``Error`` envelope, or (None, None).

    {"Error":{"code":100,"message":"..."}} and <Error><code>100</code>
    <message>...</message></Error> (REAL-ANSWERS: wetrade, etrade-python, rs-etrade).
    """
    code: object = None
    message: object = None
    if text.lstrip().startswith("{"):
        import json

        try:
            error = json.loads(text).get("Error")
        except (ValueError, AttributeError, RecursionError):
            error = None
        if isinstance(error, dict):
            code, message = error.get("code"), error.get("message")
    elif re.search(_XML_ERROR_PATTERN, text):
        found_code = re.search(_XML_CODE_PATTERN, text)
        found_message = re.search(_XML_MESSAGE_PATTERN, text)
        code = found_code.group(1).strip() if found_code else None
        message = found_message.group(1) if found_message else None
    if isinstance(code, str) and code.isascii() and code.isdigit() and len(code) <= 9:
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code < 10**9:
        code = None
    return code, (_one_line(str(message)) or None) if message is not None else None


def _html_message(text: str) -> str | None:
    """Return the message of an HTML error page (Tomcat's "Message", else the heading), unescaped."""
    import html

    found = re.search(_HTML_MESSAGE_PATTERN, text) or re.search(_HTML_HEADING_PATTERN, text)
    if found is None:
        body = re.sub(r"(?is)<(head|style|script)\b.*?</\1\s*>", " ", text)
        return _one_line(html.unescape(re.sub(_HTML_TAG_PATTERN, " ", body))) or None
    return _one_line(html.unescape(re.sub(_HTML_TAG_PATTERN, " ", found.group(1)))) or None


def _read_answer(status: int, headers: Mapping[str, str], body: bytes) -> _Reading:
    """Return what an E*TRADE error answer says, from wherever it says it.

    REAL-ANSWERS.md: the problem comes in the WWW-Authenticate header (read
    first, as the R client etrader does), a form body ("&"), a Tomcat HTML
    page in either style with comma-joined fields, or E*TRADE's JSON or XML
    Error envelope ({"Error":{"message":"oauth_problem=token_rejected"}}).
    Bodies are UTF-8 with replacement (the en dash of the new Tomcat title
    broke rauth's ASCII decoding, pyetrade #23). The rate limit is reported
    as 400 with a page saying "Number of requests exceeded the rate limit
    set" (E*TRADE: Rate Limits), or elsewhere as 429.
    """
    text = body[:_ANSWER_READ_LIMIT].decode("utf-8", errors="replace")
    code, message = _error_envelope(text)
    is_html = re.match(_HTML_PATTERN, text) is not None
    if is_html:
        import html

        message = message or _html_message(text)
        text = html.unescape(text)
    fields = _oauth_fields(str(headers.get("WWW-Authenticate") or "")) or _oauth_fields(text)
    if message is None and not fields and not text.lstrip().startswith(("{", "[", "<")):
        message = _one_line(text) or None  # a plain text answer
    said = message or ("" if fields else text)
    rate_limited = status == 429 or bool(re.search(_RATE_LIMIT_PATTERN, said))
    return _Reading(fields, code, message, rate_limited)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Return Retry-After in seconds, or None when absent or not valid (RFC 9110 §10.2.3).

    Valid is delay-seconds (1*DIGIT, ASCII digits only) or an HTTP-date
    (RFC 9110 §5.6.7). A date is measured against the answer's own Date
    header when it has one, so this machine's clock skew does not enter.
    """
    value = str(headers.get("Retry-After") or "").strip()
    if value.isascii() and value.isdigit():
        return float(value) if len(value) <= 9 else None
    if not re.fullmatch(r"[A-Za-z]{3}, \d\d [A-Za-z]{3} \d{4} \d\d:\d\d:\d\d GMT", value):
        return None
    when = _http_date(value)
    date = _http_date(str(headers.get("Date") or ""))
    if when is None:
        return None
    return max(0.0, when - (time.time() if date is None else date))


def _http_date(value: str) -> float | None:
    """Return an HTTP-date (RFC 9110 §5.6.7) as epoch seconds, or None."""
    import email.utils

    try:
        return email.utils.parsedate_to_datetime(value).timestamp() if value else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _server_clock_offset(
    fields: Mapping[str, str], headers: Mapping[str, str], local_now: float
) -> float | None:
    """Return server time minus local time from a timestamp_refused answer, or None.

    From oauth_acceptable_timestamps=A-B (OAuth problem reporting) only when
    it is plausible: ASCII digits, at most 12 each, A <= B, and its middle
    within a day of the answer's Date header or of this machine's clock
    (pyetrade #55 published "1636665132-16366687", cut short: its average
    would be 25 years off). Else from the Date header (RFC 9110 §6.6.1).
    """
    date = _http_date(str(headers.get("Date") or ""))
    window = re.fullmatch(r"(\d{1,12})-(\d{1,12})", fields.get("oauth_acceptable_timestamps", ""))
    if window and window.group(1).isascii() and window.group(2).isascii():
        start, end = int(window.group(1)), int(window.group(2))
        middle = (start + end) / 2
        if start <= end and any(abs(middle - t) <= 24 * 3600 for t in (date, local_now) if t is not None):
            return middle - local_now
    return None if date is None else date - local_now


def _logger_debug(message: str, *args: object) -> None:
    """Log a DEBUG line on the "oauth1_etrade" logger (never a secret)."""
    import logging

    logging.getLogger("oauth1_etrade").debug(message, *args)


def _mask(value: str) -> str:
    """Return an identifier shortened for display: its first 4 characters and a count."""
    return f"{value[:4]}…({len(value)} chars)" if len(value) > 4 else "…"


# ---- E*TRADE: token lifetime (US Eastern midnight) ----

_EST = -5 * 3600
_EDT = -4 * 3600
_DAY = 86400


def _nth_sunday(year: int, month: int, n: int) -> int:
    """Return the day of the month of the n-th Sunday."""
    import calendar  # only the no-tzdata fallback needs it

    first_weekday = calendar.weekday(year, month, 1)  # Monday is 0
    return 1 + (6 - first_weekday) % 7 + 7 * (n - 1)


def _us_eastern_offset(t: float) -> int:
    """Return US Eastern's UTC offset in seconds at epoch time ``t`` by the US rule.

    15 U.S.C. §260a as amended in 2005 (in force since 2007): daylight time
    from the second Sunday of March, 02:00 EST (07:00 UTC), to the first
    Sunday of November, 02:00 EDT (06:00 UTC).
    """
    import calendar  # only the no-tzdata fallback needs it

    year = time.gmtime(t).tm_year
    start = calendar.timegm((year, 3, _nth_sunday(year, 3, 2), 7, 0, 0))
    end = calendar.timegm((year, 11, _nth_sunday(year, 11, 1), 6, 0, 0))
    return _EDT if start <= t < end else _EST


def _next_eastern_midnight_by_rule(t: float) -> float:
    """Return the next midnight in US Eastern time after ``t``, by the US rule alone."""
    local_day = (int(t) + _us_eastern_offset(t)) // _DAY
    midnight_local = (local_day + 1) * _DAY
    # Midnight is never inside a 02:00 transition: try daylight time, then standard.
    as_daylight = midnight_local - _EDT
    return float(as_daylight if _us_eastern_offset(as_daylight) == _EDT else midnight_local - _EST)


def _next_eastern_midnight_by_zoneinfo(t: float) -> float | None:
    """Return the next midnight in America/New_York after ``t``, or None without tz data."""
    import datetime

    try:
        import zoneinfo
    except ImportError:  # a Python built without it (some embedded and distro builds)
        return None
    try:
        zone = zoneinfo.ZoneInfo("America/New_York")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # no tz data
        return None
    day = datetime.datetime.fromtimestamp(t, zone).date() + datetime.timedelta(days=1)
    return datetime.datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()


def access_token_expiry(issued_at: float) -> float:
    """Return when an access token issued at ``issued_at`` expires (epoch seconds).

    E*TRADE: Get Access Token, "the access token expires at the end of the
    current calendar day, US Eastern time": the next midnight in
    America/New_York, from zoneinfo when tz data exists, else by the US rule.
    """
    by_zone = _next_eastern_midnight_by_zoneinfo(issued_at)
    return _next_eastern_midnight_by_rule(issued_at) if by_zone is None else by_zone


class Token:
    """An OAuth token with its secret, and when it was issued and last used.

    Instances are not changed once made; the secret never appears in repr().
    ``expires_at`` is when an access token issued then expires (worked out
    once, on first use, and kept by ``used_at``).
    """

    __slots__ = ("_expires_at", "issued_at", "last_used", "secret", "token")

    def __init__(self, token: str, secret: str, issued_at: float, last_used: float | None = None):
        self.token = _require_str("token", token)
        self.secret = _require_str("token_secret", secret)
        self.issued_at = float(issued_at)
        self.last_used = self.issued_at if last_used is None else float(last_used)
        self._expires_at: float | None = None

    @property
    def expires_at(self) -> float:
        """When this access token expires: midnight US Eastern after ``issued_at``."""
        if self._expires_at is None:
            self._expires_at = access_token_expiry(self.issued_at)
        return self._expires_at

    def used_at(self, when: float) -> Token:
        """Return this token with ``last_used`` set to ``when``."""
        used = Token(self.token, self.secret, self.issued_at, when)
        used._expires_at = self._expires_at
        return used

    def same_as(self, other: Token) -> bool:
        """Return whether ``other`` is the same token (value and secret), however used since."""
        return self.token == other.token and self.secret == other.secret

    def newer_than(self, other: Token) -> bool:
        """Return whether this is a later login than ``other``, or the same token used later."""
        if self.same_as(other):
            return self.last_used > other.last_used
        return self.issued_at > other.issued_at

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        return (self.token, self.secret, self.issued_at, self.last_used) == (
            other.token,
            other.secret,
            other.issued_at,
            other.last_used,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Token(token={_mask(self.token)!r}, secret=<hidden>, issued_at={self.issued_at:.0f})"


#: The states of an access token (token_state).
MISSING, ACTIVE, IDLE, EXPIRED = "missing", "active", "idle", "expired"


def token_state(token: Token | None, now: float) -> str:
    """Return what E*TRADE's rules say of an access token at ``now`` (E*TRADE: Get Access Token,
    "Token lifespan"): MISSING; EXPIRED at the end of the calendar day, US Eastern (only a new
    login helps); IDLE after two hours without a request (renew it); else ACTIVE.

    The one place the expiry and idle rules are written: the session and the
    emulator both ask it.
    """
    if token is None:
        return MISSING
    if now >= token.expires_at:
        return EXPIRED
    if now - token.last_used >= IDLE_LIMIT:
        return IDLE
    return ACTIVE


def request_token_time_left(token: Token, now: float) -> float:
    """Return the seconds a request token has left at ``now`` (E*TRADE: it expires after five
    minutes); zero or less once it expired."""
    return token.issued_at + REQUEST_TOKEN_LIFETIME - now


# ---- E*TRADE: requests and answers as values (no I/O) ----


class Response:
    """An HTTP response: ``status`` (also ``status_code``), ``headers`` (case-insensitive),
    ``body`` (bytes), ``text`` (the body as UTF-8) and ``json()``."""

    __slots__ = ("body", "headers", "status", "url")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, url: str = ""):
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url

    @property
    def status_code(self) -> int:
        """The HTTP status, under the name requests and httpx use."""
        return self.status

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self, **kwargs: Any) -> Any:
        """Return the body parsed as JSON, or None when there is no body (E*TRADE answers an
        empty collection with 204 and no body).

        Keyword arguments go to json.loads, e.g. ``parse_float=decimal.Decimal`` for prices.
        """
        import json

        return json.loads(self.body, **kwargs) if self.body.strip() else None

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


def _is_loopback(host: str) -> bool:
    """Return whether ``host`` names this machine (localhost or a loopback address)."""
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base(label: str, url: str) -> str:
    """Return a base URL without a trailing "/"; https, or http to a loopback host only."""
    _require_str(label, url)
    _reject_controls(label, url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValueError(f"{label}: expected an http(s) URL with a host")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InvalidValueError(f"{label}: plain http is allowed only to this machine (loopback); use https")
    return url.rstrip("/")


def _display_url(url: str) -> str:
    """Return the URL without its query, for messages."""
    return url.partition("?")[0]


def _wire_url(url: str) -> str:
    """Return ``url`` with what a request line cannot carry percent-encoded (UTF-8), once.

    RFC 9112 §3.2 and RFC 3986 §3.3-3.4: a path and query are pchar, "/" and
    "?"; a space or "é" is not ("Apple Inc" becomes "Apple%20Inc"). "%" is
    kept, so an escape already there stays as it is. The URL is signed as it
    is sent, so the base string (§3.4.1.2, which escapes the same way) and the
    bytes on the wire agree. The fragment is never sent.
    """
    parts = urlsplit(url.partition("#")[0])
    path = _url_quote(parts.path, safe=_PATH_SAFE)
    query = _url_quote(parts.query, safe=_PATH_SAFE + "?")
    return f"{parts.scheme}://{parts.netloc}{path}" + (f"?{query}" if query else "")


def _who_answered(url: str) -> str:
    """Return "E*TRADE" for E*TRADE's hosts, else "the server" (an emulator, a proxy)."""
    host = urlsplit(url).hostname or ""
    return "E*TRADE" if host == "etrade.com" or host.endswith(".etrade.com") else "the server"


def _error_from(
    response: Response, action: str, problems: Mapping[str, type[OAuthError]] = _PROBLEM_ERRORS
) -> OAuthError:
    """Return the OAuthError for a non-2xx answer: its class from what the answer says
    (_read_answer), E*TRADE's own words and what to do in the message."""
    reading = _read_answer(response.status, response.headers, response.body)
    problem = reading.problem
    kind = RateLimitError if reading.rate_limited else problems.get(problem or "", OAuthError)
    message = f"{action}: {_who_answered(response.url)} answered HTTP {response.status}"
    if problem:
        message += f" ({problem})"
    if reading.code is not None:
        message += f" with error code {reading.code}"
    if reading.message and (problem is None or problem not in reading.message):
        message += f": {reading.message}"
    advice = _PROBLEM_ADVICE.get(problem or "") or _ADVICE.get(kind)
    details: dict[str, Any] = {
        "status": response.status,
        "problem": problem,
        "code": reading.code,
        "server_message": reading.message,
        "fields": reading.fields,
    }
    if kind is RateLimitError:
        details["retry_after"] = _retry_after(response.headers)
        if details["retry_after"] is not None:
            message += f" (Retry-After: {details['retry_after']:g} s)"
    return _advised(kind, message, advice, **details)


def _parse_token_response(response: Response, action: str) -> dict[str, str]:
    """Return the fields of a form-encoded token response, or raise OAuthError."""
    try:
        fields = dict(_parse_form(response.body.decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        fields = {}
    token, secret = fields.get("oauth_token"), fields.get("oauth_token_secret")
    # A token is printable text (E*TRADE's are base64): one holding a control
    # character could never be signed, and must not reach a header.
    if not (
        isinstance(token, str) and isinstance(secret, str) and token.isprintable() and secret.isprintable()
    ):
        token = secret = None
    if not token or not secret:
        raise OAuthError(
            f"{action}: the answer of {_who_answered(response.url)} has no oauth_token and "
            "oauth_token_secret",
            status=response.status,
        )
    return {k: v for k, v in fields.items() if isinstance(k, str) and isinstance(v, str)}


def _callback_query(text: str) -> list[Param] | None:
    """Return the query pairs of a callback URL, a "/path?query", or text holding
    "oauth_verifier="; None for anything else (a bare verifier code)."""
    if "://" in text or "?" in text:
        return _parse_form(urlsplit(text).query)
    if "oauth_verifier=" in text:
        return _parse_form(text)
    return None


def _verifier_from(verifier: str) -> str:
    """Return the verifier code, taken from a pasted callback URL when given one."""
    verifier = _require_str("verifier", verifier).strip()
    query = _callback_query(verifier)
    if query is not None:
        found = [v for n, v in query if n == "oauth_verifier" and isinstance(v, str)]
        if not found:
            raise InvalidValueError("verifier: the URL has no oauth_verifier parameter")
        verifier = found[0]
    if not verifier:
        raise InvalidValueError("verifier: empty")
    _reject_controls("verifier", verifier)
    return verifier


# ---- E*TRADE: one call, decided from values (no sockets, files, locks or clock) ----
#
# As h11 keeps every state rule in one place with no I/O, the decisions of one
# call live here: which token state allows a call, what an answer means, and
# whether the request may go once more. ETradeSession (below) is the driver:
# it owns the sockets, the store, the locks and the clock, and asks this part.


#: Methods that may be sent a second time (RFC 9110 §9.2.2 idempotent, and
#: safe): only these are resent when a kept-alive connection turns out dead.
#: An order (POST, PUT, DELETE) is never sent twice.
RESENDABLE_METHODS = frozenset({"GET", "HEAD"})

# What a call does next: the steps _CallCore gives its driver.
_RETURN = "return the answer"
_RESEND_STALE = "resend on a new connection"
_RETRY_AT_SERVER_CLOCK = "send again at the server's clock"
_RESEND_WITH_NEW_TOKEN = "send again with a renewed or newer token"

# Refusals for the token alone (E*TRADE: Get Access Token, "Token lifespan").
_TOKEN_REFUSALS = (TokenInactiveError, TokenRejectedError, TokenExpiredError)


def _hosts(
    sandbox: bool, api_base: str | None, oauth_base: str | None, authorize_base: str | None
) -> tuple[str, str, str]:
    """Return the API, OAuth and authorize bases: E*TRADE's unless given (see ETradeSession).

    The /oauth/* endpoints are on the production host in both environments,
    as E*TRADE's sample client has them; a given ``api_base`` serves them too.
    """
    api = _check_base("api_base", api_base or (SANDBOX_API_BASE if sandbox else PRODUCTION_API_BASE))
    oauth = _check_base("oauth_base", oauth_base or (api if api_base else OAUTH_BASE))
    return api, oauth, _check_base("authorize_base", authorize_base or AUTHORIZE_URL)


def _environment_of(api_base: str) -> str:
    """Return "production" or "sandbox" for E*TRADE's API hosts, else "custom" (an emulator, a proxy)."""
    return {PRODUCTION_API_BASE: "production", SANDBOX_API_BASE: "sandbox"}.get(api_base, "custom")


def _token_report(token: Token | None, now: float) -> dict[str, Any]:
    """Return an access token's age, idle time, expiry and whether a renew is due at ``now``."""
    if token is None:
        return {"access_token": False}
    state = token_state(token, now)
    return {
        "access_token": True,
        "issued_at": token.issued_at,
        "age": now - token.issued_at,
        "idle": now - token.last_used,
        "expires_at": token.expires_at,
        "expires_in": token.expires_at - now,
        "expired": state == EXPIRED,
        "renew_due": state == IDLE,
    }


def _renew_first(token: Token | None, now: float, auto_renew: bool) -> bool:
    """Return whether an API call at ``now`` must renew ``token`` first; raise if it cannot use it.

    E*TRADE: Get Access Token, "Token lifespan": no token or one past midnight
    US Eastern needs a login; an idle one (two hours without a request) is
    renewed, or with ``auto_renew`` off raises TokenInactiveError.
    """
    state = token_state(token, now)
    if state == MISSING:
        raise _advised(LoginRequiredError, "no access token", "log in first")
    if state == EXPIRED:
        raise _advised(
            TokenExpiredError,
            "the access token expired at midnight US Eastern (E*TRADE: Get Access Token)",
            "log in",
        )
    if state == IDLE and not auto_renew:
        raise _advised(TokenInactiveError, "the access token is inactive after 2 idle hours", "renew")
    return state == IDLE


def _exchangeable_request_token(token: Token | None, now: float) -> Token:
    """Return the request token if it may still be exchanged for an access token at ``now``.

    E*TRADE: Get Request Token, "the request token expires after five minutes".
    """
    if token is None:
        raise _advised(UsageError, "no request token", "get a request token")
    if request_token_time_left(token, now) <= 0:
        raise TokenExpiredError(
            "the request token is older than 5 minutes (E*TRADE: request tokens expire after five "
            "minutes); start the login again"
        )
    return token


def _check_renewable(token: Token, now: float) -> None:
    """Raise TokenExpiredError if ``token`` is past midnight US Eastern at ``now``: renewing
    cannot bring it back (E*TRADE: Renew Access Token renews an inactive token only)."""
    if token_state(token, now) == EXPIRED:
        raise _advised(
            TokenExpiredError, "the access token expired at midnight US Eastern; renew cannot help", "log in"
        )


def _maybe_sent(method: str) -> str:
    """Return the warning for a failed request that must not be sent again, or ""."""
    if method in RESENDABLE_METHODS:
        return ""
    return f"; the {method} may or may not have reached the server, and it was not sent again"


def _redirect_error(where: str, response: Response) -> TransportError:
    """Return the error for a 3xx answer: a signed request is valid for its own URL only, and
    its Authorization header must not travel to another host, so it is never followed."""
    try:
        host = urlsplit(response.headers.get("Location", "")).hostname
    except ValueError:  # a malformed Location ("http://[/x")
        host = None
    return TransportError(
        f"{where} was redirected to {_one_line(host or 'elsewhere', 100)}; signed requests are not followed",
        status=response.status,
    )


class _CallCore:
    """The decisions of one signed call, taken from values alone: the retry rules in one place.

    It holds the request (method, URL, body, headers, the answer's size
    ``limit``, and the OAuth parameters of the token endpoints). The driver
    signs and sends it, then reports what happened: ``answered``
    with the answer, ``stale`` when a kept-alive connection was found dead
    before any byte of the answer, or ``failed`` when no complete answer
    came. The core returns the next step (_RETURN the answer, or one
    further exchange) or raises the error. A call makes at most two
    exchanges, and the second is one of three, each sent only because the
    first provably was not executed:

    - _RESEND_STALE, a GET or HEAD on a new connection: the server closed
      the kept-alive one before answering (urllib3 retries the same way). A
      GET changes nothing (RFC 9110 §9.2.2); a POST may have arrived, so
      it is not resent.
    - _RETRY_AT_SERVER_CLOCK, after timestamp_refused (E*TRADE: the
      timestamp must be within five minutes of its clock), at the offset
      the answer shows (``new_offset``, which the driver keeps even when
      the call may not retry), or at the one another thread learned since
      this request was signed.
    - _RESEND_WITH_NEW_TOKEN, API calls only, after a refusal for the token
      (token_inactive, token_rejected, or token_expired: E*TRADE does not
      document what an idle token gets, REAL-ANSWERS). ``may_renew`` says
      whether renewing may help (``auto_renew`` on, and the token not past
      this session's midnight); ``refusal`` is the error to raise if no
      other token can be had.
    """

    def __init__(
        self,
        method: str,
        url: str,
        action: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int = MAX_TOKEN_RESPONSE,
        problems: Mapping[str, type[OAuthError]] = _PROBLEM_ERRORS,
        api: bool = False,
        oauth: Mapping[str, str] | None = None,
    ):
        # The request, as every exchange of the call sends it (signed anew each time).
        self.method, self.url, self.body, self.limit = method, url, body, limit
        self.headers = dict(headers or {})
        self.content_type = next((v for k, v in self.headers.items() if k.lower() == "content-type"), None)
        self.oauth = dict(oauth or {})  # oauth_callback or oauth_verifier, as sign_request's keywords
        self.where = f"{method} {_display_url(url)}"
        self.action = action
        self.problems = problems
        self.api = api
        self.exchanges = 1
        self.clock_confirmed = False  # the server took this call's timestamp
        self.new_offset: float | None = None  # the server's clock, from a timestamp_refused answer
        self.may_renew = False
        self.refusal: OAuthError | None = None

    def authorization(
        self, consumer_key: str, consumer_secret: str, token: Token | None, timestamp: str
    ) -> str:
        """Return the Authorization header for one exchange of the call (sign_request)."""
        return sign_request(
            self.method, self.url,
            consumer_key=consumer_key, consumer_secret=consumer_secret,
            token=token.token if token else None, token_secret=token.secret if token else "",
            body=self.body, content_type=self.content_type, timestamp=timestamp, **self.oauth,
        )  # fmt: skip

    def _one_more(self) -> bool:
        """Count a further exchange if the call has made only one; return whether it may."""
        if self.exchanges >= 2:
            return False
        self.exchanges += 1
        return True

    def stale(self) -> str:
        """Return _RESEND_STALE, or raise: the kept-alive connection was dead before any answer."""
        if self.method in RESENDABLE_METHODS and self._one_more():
            return _RESEND_STALE
        raise TransportError(
            f"{self.where} failed: the server closed the kept-alive connection{_maybe_sent(self.method)}"
        )

    def failed(self, reason: str) -> TransportError:
        """Return the error for an exchange that got no complete answer: never sent again."""
        return TransportError(f"{reason}{_maybe_sent(self.method)}")

    def answered(
        self,
        response: Response,
        *,
        offset_used: float,
        offset_now: float,
        local_time: float,
        token: Token | None,
        auto_renew: bool,
    ) -> str:
        """Return _RETURN for a 2xx answer, or a further exchange; raise the answer's error otherwise.

        ``offset_used`` is the clock offset the request was signed with,
        ``offset_now`` the session's offset now, ``local_time`` the local
        clock now, ``token`` the token the request was signed with.
        """
        if 300 <= response.status < 400:
            raise _redirect_error(self.where, response)
        if 200 <= response.status < 300:
            self.clock_confirmed = True
            return _RETURN
        error = _error_from(response, self.action, self.problems)
        self.clock_confirmed = error.problem != "timestamp_refused"
        if not self.clock_confirmed:
            self.new_offset = (
                offset_now
                if offset_now != offset_used
                else _server_clock_offset(error.fields, response.headers, local_time)
            )
            if self.new_offset is not None and self._one_more():
                return _RETRY_AT_SERVER_CLOCK
        elif self.api and isinstance(error, _TOKEN_REFUSALS) and token is not None and self._one_more():
            self.refusal = error
            self.may_renew = auto_renew and token_state(token, local_time + offset_now) != EXPIRED
            return _RESEND_WITH_NEW_TOKEN
        raise error


def _check_session_options(
    consumer_key: object,
    consumer_secret: object,
    token: object,
    token_secret: object,
    timeout: object,
    trust_env: object,
) -> None:
    """Raise InvalidValueError or InvalidTypeError for ETradeSession options that cannot work."""
    _require_texts(("consumer_key", "consumer_secret"), (consumer_key, consumer_secret), required=2)
    if not consumer_key or not consumer_secret:
        raise InvalidValueError("consumer_key and consumer_secret must not be empty")
    if (token is None) != (token_secret is None):
        raise InvalidValueError("token and token_secret go together: give both or neither")
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InvalidValueError("timeout: expected a positive number of seconds")
    if not isinstance(trust_env, bool):
        raise InvalidTypeError(f"trust_env: expected bool, but got {type(trust_env).__name__!r}")


def _given_token(
    token: str, secret: str, issued_at: float | None, last_used: float | None, now: float
) -> Token:
    """Return the access token an application passed in: issued now unless ``issued_at`` says
    otherwise, and last used now (or at ``issued_at``, if later) unless ``last_used`` is given."""
    issued = now if issued_at is None else issued_at
    return Token(token, secret, issued, max(now, issued) if last_used is None else last_used)


def _request_body(body: object, json_value: object, headers: dict[str, str]) -> bytes | None:
    """Return the body to send for an API call and set its Content-Type in ``headers``."""
    if body is not None and json_value is not None:
        raise InvalidValueError("give body or json, not both")
    has_type = any(k.lower() == "content-type" for k in headers)
    if json_value is not None:
        import json

        if not has_type:
            headers["Content-Type"] = "application/json"
        return json.dumps(json_value).encode()
    if body is None:
        return None
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    fields = _field_pairs("body", body)
    if not has_type:
        headers["Content-Type"] = FORM_CONTENT_TYPE
    return _form_encode(fields).encode()


def _api_request(
    api_base: str,
    path_or_url: str,
    params: object,
    body: object,
    json_value: object,
    given: Mapping[str, str] | None,
) -> tuple[str, bytes | None, dict[str, str]]:
    """Return the URL, body and headers of an API call (see ETradeSession.request), checked."""
    _require_str("path_or_url", path_or_url)
    _reject_controls("path_or_url", path_or_url)  # refused, never encoded into the request
    if path_or_url.startswith("/"):
        url = api_base + path_or_url
    else:
        url = path_or_url
        _check_base("url", url.partition("?")[0])
    if params is not None:
        query = _form_encode(_field_pairs("params", params))
        if query:
            url += ("&" if "?" in url else "?") + query
    headers = dict(given or {})
    for name, value in headers.items():
        _reject_controls(f"header {name!r}", _require_str("header value", value))
        _reject_controls("header name", _require_str("header name", name))
    return _wire_url(url), _request_body(body, json_value, headers), headers


# ---- E*TRADE: token store (JSON file, mode 0600, atomic writes) ----


def default_token_path() -> str:
    """Return where tokens are saved: $ETRADE_TOKEN_FILE, else the user's config directory.

    XDG Base Directory: a relative $XDG_CONFIG_HOME is invalid and ignored
    (else the tokens would land in whatever directory a command runs in).
    """
    import os

    explicit = os.environ.get("ETRADE_TOKEN_FILE")
    if explicit:
        return explicit
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or os.path.expanduser("~")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME") or ""
        base = xdg if os.path.isabs(xdg) else os.path.expanduser("~/.config")
    return os.path.join(base, "oauth1_etrade", "tokens.json")


#: Token, pending-login and credential files are a few KiB; larger is refused.
MAX_TOKEN_FILE = 1 << 20

#: How long a save waits for another process's lock on the token file, in seconds.
LOCK_TIMEOUT = 10.0


def _owner_name(uid: int) -> str:
    """Return the user name of ``uid`` (POSIX), or the number."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _open_own_file(path: str, flags: int, what: str) -> int:
    """Open a file for the token store without following a link; return the descriptor.

    CWE-59 (CVE-2025-68146 in py-filelock): O_NOFOLLOW, so a link that
    another user planted is refused; O_NONBLOCK, so a FIFO cannot hang the
    open; then fstat: it must be a regular file, and on POSIX one that this
    user owns (a file of another user's could hold their tokens, or be
    read by them). Raises FileNotFoundError, or TokenFileError naming it.
    """
    import os
    import stat

    extra = 0  # each where the platform has it (Windows has only O_BINARY: no text-mode reads)
    for name in ("O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC", "O_BINARY"):
        extra |= getattr(os, name, 0)
    try:
        fd = os.open(path, flags | extra, 0o600)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if os.path.islink(path):
            raise TokenFileError(f"{what} {path} is a symbolic link; refused (remove it)") from None
        raise TokenFileError(f"cannot open {what} {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    elif hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        problem = f"belongs to user {_owner_name(info.st_uid)}, not to you"
    if problem:
        os.close(fd)
        raise TokenFileError(f"{what} {path} {problem}; refused")
    return fd


class _FileLock:
    """An exclusive lock on a lock file (fcntl.flock, POSIX); a no-op where fcntl is missing.

    The lock file is opened as _open_own_file opens (no links, regular, ours),
    and waited for at most ``timeout`` seconds (CWE-412: another process that
    holds it for ever must not stall every save for ever).
    """

    def __init__(self, path: str, timeout: float = LOCK_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> bool:
        """Take the lock; return whether there is one (False where fcntl is missing)."""
        import os

        try:
            import fcntl
        except ImportError:
            return False
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
        fd = _open_own_file(self.path, os.O_RDWR | os.O_CREAT, "lock file")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise TokenFileError(
                        f"lock file {self.path} is held by another process for over {self.timeout:g} s; "
                        "try again, or find the process that holds it (fuser)"
                    ) from None
                time.sleep(0.05)
        self._fd = fd
        return True

    def __exit__(self, *exc: object) -> None:
        import os

        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


class _suppress_os_error:
    """Context manager that ignores OSError (cleanup of a temporary file)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, trace: object) -> bool:
        return isinstance(value, OSError)


class TokenStore:
    """Access tokens saved per consumer key and API host in one JSON file.

    Writes go to a temporary file in the same directory, created with mode
    0600, flushed and fsynced, then renamed over the old file, so a reader
    sees the old file or the new one, never half of one; on POSIX a lock file
    beside it serializes read-modify-write, so two processes saving at once
    lose neither entry. Temporary files that a killed process left behind
    (".tokens.json.*.tmp" beside tokens.json) are removed by the next save. A
    file that is not ours to read (corrupt JSON, wrong shape, times that are
    not finite or not in range) raises TokenFileError naming it and is never
    overwritten. A file readable by group or others gets a warning.

    In shared places: no file is opened through a link, a FIFO or device is
    refused, reads stop at MAX_TOKEN_FILE bytes, a lock held by another
    process is waited for at most ``lock_timeout`` seconds, and secrets are
    written only into a directory that this user (or root, with the sticky
    bit where others may write) owns.
    """

    FORMAT = "oauth1_etrade tokens"

    def __init__(self, path: str | None = None, *, lock_timeout: float = LOCK_TIMEOUT):
        self.path = default_token_path() if path is None else _require_str("path", path)
        if not isinstance(lock_timeout, (int, float)) or not 0 <= lock_timeout < 3600:
            raise InvalidValueError("lock_timeout: expected seconds, 0 to 3600")
        self.lock_timeout = float(lock_timeout)

    def __repr__(self) -> str:
        return f"TokenStore({self.path!r})"

    @staticmethod
    def _key(consumer_key: str, api_base: str) -> str:
        return f"{api_base} {consumer_key}"

    def _read_text(self) -> str | None:
        """Return the file's text (at most MAX_TOKEN_FILE bytes, UTF-8), or None if there is none."""
        import os

        try:
            fd = _open_own_file(self.path, os.O_RDONLY, "token file")
        except FileNotFoundError:
            return None
        try:
            self._warn_if_shared(fd)
            chunks, size = [], 0
            while size <= MAX_TOKEN_FILE:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as exc:
            raise TokenFileError(f"cannot read token file {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        if size > MAX_TOKEN_FILE:
            raise TokenFileError(f"token file {self.path} is larger than {MAX_TOKEN_FILE} bytes; refused")
        try:
            return b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError:
            raise TokenFileError(f"cannot read token file {self.path}: not UTF-8 text") from None

    def _read(self) -> dict[str, dict[str, object]]:
        import json

        text = self._read_text()
        if text is None:
            return {}
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # NOTE: only the position is used: PyPy 7.3.11's JSON decoder can
            # produce a message string that crashes when formatted.
            lineno, colno = getattr(exc, "lineno", None), getattr(exc, "colno", None)
            where = f"line {lineno}, column {colno}" if lineno else "nested too deeply"
            raise TokenFileError(
                f"token file {self.path} is corrupt (not valid JSON at {where}); "
                "it was left as it is: fix or delete it"
            ) from None
        tokens = data.get("tokens") if isinstance(data, dict) and data.get("format") == self.FORMAT else None
        if not isinstance(tokens, dict) or not all(isinstance(v, dict) for v in tokens.values()):
            raise TokenFileError(
                f"token file {self.path} is not an oauth1_etrade token file; it was left as it is: "
                "fix or delete it"
            )
        return tokens

    def _warn_if_shared(self, fd: int) -> None:
        """Warn when the token file is readable or writable by group or others (POSIX)."""
        import os

        if os.name == "posix" and os.fstat(fd).st_mode & 0o077:
            import warnings

            warnings.warn(
                f"token file {self.path} is readable or writable by other users; run: chmod 600 {self.path}",
                stacklevel=4,
            )

    def _locked(self) -> _FileLock:
        """Return a context manager holding this store's lock file (POSIX; no-op elsewhere),
        once the folder is known to be safe for secrets (nothing is created before)."""
        import os

        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._check_directory(directory)
        return _FileLock(self.path + ".lock", self.lock_timeout)

    def _check_directory(self, directory: str) -> None:
        """Refuse to write secrets into a directory another user controls (POSIX).

        Ours, or root's (/tmp) with the sticky bit where others may write: no
        one else can then replace or remove what is written there.
        """
        import os
        import stat

        if not hasattr(os, "geteuid"):
            return
        info = os.stat(directory)
        others_write = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if info.st_uid not in (os.geteuid(), 0) or others_write and not info.st_mode & stat.S_ISVTX:
            raise TokenFileError(
                f"the token file's folder {directory} is writable by another user "
                f"({_owner_name(info.st_uid)} owns it); refused: use a folder of your own"
            )

    def _temporary_prefix(self) -> str:
        """Return the name prefix of this store's temporary files: ".tokens.json." for tokens.json."""
        import os

        return f".{os.path.basename(self.path)}."

    def _remove_leftovers(self, directory: str, locked: bool) -> None:
        """Delete temporary files that interrupted saves (a killed process) left behind.

        They hold token secrets. Saves run one at a time under the lock file,
        so while this save holds it every such file is a leftover; without a
        lock (no fcntl), only files older than an hour are taken as such.
        """
        import os

        prefix = self._temporary_prefix()
        cutoff = time.time() - 3600
        for name in os.listdir(directory):
            if name.startswith(prefix) and name.endswith(".tmp"):
                path = os.path.join(directory, name)
                with _suppress_os_error():
                    if locked or os.stat(path).st_mtime < cutoff:
                        os.unlink(path)

    def _write(self, tokens: dict[str, dict[str, object]], locked: bool) -> None:
        import json
        import os
        import tempfile

        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._remove_leftovers(directory, locked)
        text = json.dumps({"format": self.FORMAT, "version": 1, "tokens": tokens}, indent=2, sort_keys=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=self._temporary_prefix(), suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            with _suppress_os_error():
                os.unlink(temporary)
            raise

    def load(self, consumer_key: str, api_base: str) -> Token | None:
        """Return the saved access token for this consumer key and API host, or None."""
        entry = self._read().get(self._key(consumer_key, api_base))
        if entry is None:
            return None
        token, secret = entry.get("token"), entry.get("token_secret")
        times = [entry.get("issued_at"), entry.get("last_used")]
        # Epoch seconds between 1970 and 2106: NaN, Infinity, 1e300 and 10**400 are not times.
        in_range = all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t < 2**32 for t in times
        )
        if not (isinstance(token, str) and isinstance(secret, str) and in_range):
            raise TokenFileError(f"token file {self.path} has a malformed entry; fix or delete it")
        return Token(token, secret, float(times[0]), float(times[1]))  # type: ignore[arg-type]

    def save(self, consumer_key: str, api_base: str, token: Token) -> None:
        """Save the access token for this consumer key and API host."""
        with self._locked() as locked:
            tokens = self._read()
            tokens[self._key(consumer_key, api_base)] = {
                "token": token.token,
                "token_secret": token.secret,
                "issued_at": token.issued_at,
                "last_used": token.last_used,
            }
            self._write(tokens, locked)

    def delete(self, consumer_key: str, api_base: str, *, token: Token | None = None) -> None:
        """Forget the access token for this consumer key and API host.

        With ``token``, only if the saved one is that token: a revoke must not
        delete a token another process saved since.
        """
        with self._locked() as locked:
            tokens = self._read()
            key = self._key(consumer_key, api_base)
            entry = tokens.get(key)
            if entry is None or token is not None and entry.get("token") != token.token:
                return
            del tokens[key]
            self._write(tokens, locked)


# ---- E*TRADE: transport at the edge (http.client, kept alive) ----


#: Idle connections kept per host; more than this are closed when returned.
MAX_IDLE_CONNECTIONS = 10


class _StaleConnection(Exception):
    """A reused connection failed before any byte of the answer came back."""


class _NoAnswer(Exception):
    """An exchange got no complete answer (the message says why and where); whether the
    request may have been executed is the caller's to say (_CallCore.failed)."""


class _TimedReads(io.RawIOBase):
    """The raw reads of an answer: each bounded by the deadline and counted."""

    def __init__(self, timed: _TimedSocket):
        super().__init__()
        self._timed = timed
        # makefile's SocketIO defers closing the socket until it is closed too,
        # so an answer can be read after http.client closed its connection.
        self._file = timed.sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self._timed.sock.settimeout(self._timed.time_left())
        count: int = self._file.readinto(buffer) or 0
        self._timed.received += count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


class _AnswerReader(io.BufferedReader):
    """The buffered answer stream; remembers a line cut short by the end of the stream.

    NOTE: http.client's header parser takes the end of the stream as the end
    of the headers, so "HTTP/1.1 200 OK\\r\\nContent-Type: appl" and a closed
    connection would read as a complete, empty 200. A line without its LF is
    how that shows: the caller refuses such an answer.
    """

    cut = False

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(-1 if size is None else size)
        if not line.endswith(b"\n"):
            self.cut = True
        return line


class _TimedSocket:
    """A connected socket as http.client sees it, every write and read bounded by one deadline.

    http.client calls only ``sendall``, ``makefile`` and ``close`` on it. Each
    exchange sets ``deadline``; before each send and each receive the socket's
    timeout becomes the time left, so a peer that drips bytes cannot stretch
    an exchange past its timeout (a plain socket timeout bounds each read).
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.deadline = 0.0
        #: bytes of the current answer received so far
        self.received = 0
        self.reader: _AnswerReader | None = None

    def time_left(self) -> float:
        """Return the seconds left before the deadline, or raise TimeoutError."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        return left

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self.sock.settimeout(self.time_left())
            sent = self.sock.send(view[:65536])
            view = view[sent:]

    def makefile(self, mode: str) -> _AnswerReader:
        self.reader = _AnswerReader(_TimedReads(self))
        return self.reader

    def close(self) -> None:
        self.sock.close()

    def dropped(self) -> bool:
        """Return whether an idle connection was closed by the peer (or sent something unasked).

        As urllib3's is_connection_dropped: an idle kept-alive socket that
        polls readable holds either EOF or bytes nobody asked for.
        """
        import select

        if getattr(self.sock, "pending", lambda: 0)():
            return True
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([self.sock], [], [], 0)[0])


class _Pacer:
    """Keeps one session's calls under E*TRADE's per-module rate limits, for all its threads.

    The server counts requests when they arrive, which this machine cannot
    see; what it can see is that a request arrived at the latest when its
    answer came back. So a request is sent only when fewer than the limit of
    earlier requests may have arrived within the last second (or hour): those
    still in flight, and those answered less than a second (an hour) ago. Then
    no second (hour) at the server holds more than the limit, whatever the
    network's delays. A call waits (never fails) for its turn; the threads of
    a session share one pacer.
    """

    def __init__(self, limits: Mapping[str, tuple[int, int]]):
        import collections
        import threading

        self._limits = dict(limits)
        # When each module's answered requests were answered (the last hour), and how many fly.
        self._answered: dict[str, collections.deque[float]] = {m: collections.deque() for m in limits}
        self._in_flight = dict.fromkeys(limits, 0)
        self._changed = threading.Condition()

    def _delay(self, module: str, now: float) -> float | None:
        """Return how long a request of ``module`` must wait from ``now``: 0 or less for no wait,
        None until a request in flight is answered."""
        answered, flying = self._answered[module], self._in_flight[module]
        while answered and answered[0] <= now - 3600:
            answered.popleft()
        last_second: list[float] = []  # answered within the last second, oldest first
        for when in reversed(answered):
            if when <= now - 1.0:
                break
            last_second.insert(0, when)
        per_second, per_hour = self._limits[module]
        delay = 0.0
        for limit, window, within in ((per_second, 1.0, last_second), (per_hour, 3600.0, answered)):
            excess = flying + len(within) - limit + 1  # how many must leave the window first
            if excess <= 0:
                continue
            if excess > len(within):
                return None
            delay = max(delay, within[excess - 1] + window - now)
        return delay

    def wait_for_turn(self, module: str | None) -> bool:
        """Return when a request of ``module`` may be sent (True), counting it as in flight;
        False at once for a module without limits."""
        if module not in self._limits:
            return False
        with self._changed:
            while True:
                delay = self._delay(module, time.monotonic())
                if delay is not None and delay <= 0:
                    self._in_flight[module] += 1
                    return True
                _logger_debug("pacing: a %s request waits for E*TRADE's rate limit", module)
                self._changed.wait(delay)

    def answered(self, module: str | None) -> None:
        """Record that a request of ``module`` that wait_for_turn let go has its answer (or failed)."""
        if module not in self._limits:
            return
        with self._changed:
            self._in_flight[module] -= 1
            self._answered[module].append(time.monotonic())
            self._changed.notify_all()


def _read_body(answer: http.client.HTTPResponse, limit: int, where: str) -> bytes:
    """Return a response body read in pieces: at most ``limit`` bytes, and complete."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = answer.read1(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise TransportError(f"{where}: the answer is larger than {limit} bytes; refused")
        chunks.append(chunk)
    if getattr(answer, "length", None):  # Content-Length promised more than came
        raise TransportError(f"{where}: the answer was cut short")
    # read1 leaves a drained Content-Length answer open; http.client must see it
    # closed before the connection carries the next request.
    answer.close()
    return b"".join(chunks)


def _checked_ssl_context(context: object) -> ssl.SSLContext | None:
    """Return ``context`` if it verifies certificates and host names, else raise (None passes).

    TLS verification cannot be switched off: a context that skips it is refused.
    """
    if context is None:
        return None
    import ssl

    if not isinstance(context, ssl.SSLContext):
        raise InvalidTypeError(f"ssl_context: expected ssl.SSLContext, but got {type(context).__name__!r}")
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        raise InvalidValueError(
            "ssl_context: must verify certificates and host names (CERT_REQUIRED, check_hostname); "
            "TLS verification cannot be switched off"
        )
    return context


class _Proxy:
    """An HTTP proxy that HTTPS goes through by CONNECT: its address and Proxy-Authorization."""

    __slots__ = ("authorization", "host", "port")

    def __init__(self, url: str, label: str):
        text = url if "://" in url else f"http://{url}"  # "proxy:3128", as curl and requests read it
        try:
            parts = urlsplit(text)
            port = parts.port or 80
        except ValueError:
            raise InvalidValueError(f"{label}: not a proxy URL") from None
        if parts.scheme != "http" or not parts.hostname or re.search(r"[\x00-\x20\x7f]", text):
            raise InvalidValueError(
                f"{label}: expected http://[user:password@]host:port (a TLS proxy is not supported)"
            )
        self.host, self.port = parts.hostname, port
        self.authorization: str | None = None
        if parts.username is not None:
            # RFC 7617 Basic, from the URL's user and password (percent-decoded).
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.authorization = "Basic " + binascii.b2a_base64(pair, newline=False).decode("ascii")

    def __repr__(self) -> str:  # never the password
        return f"<proxy {self.host}:{self.port}{' with credentials' if self.authorization else ''}>"


def _proxy_for(scheme: str, host: str, proxy: _Proxy | None, trust_env: bool) -> _Proxy | None:
    """Return the proxy a request to scheme://host goes through, or None (direct).

    ``proxy`` (the session's proxy=) wins; else, unless ``trust_env`` is
    False, HTTPS_PROXY or ALL_PROXY, with NO_PROXY, read by the standard
    library's urllib.request rules (lower case first), as requests and httpx
    read them. Plain http goes only to this machine (_check_base), and a
    proxy's own loopback is not this machine's: it never goes through one.
    """
    if scheme != "https":
        return None
    if proxy is not None or not trust_env:
        return proxy
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None
    return _Proxy(url, "HTTPS_PROXY")


def _timed(connection: http.client.HTTPConnection) -> _TimedSocket:
    """Return the _TimedSocket a pooled connection was given."""
    return connection.sock  # type: ignore[return-value]


class _Pool:
    """Kept-alive HTTP/1.1 connections, shared by every thread of one session.

    As urllib3's connection pool: one lock guards a stack of idle connections
    per (scheme, host, port); a thread takes one (or opens a new one), uses it
    for one exchange alone, and gives it back when the answer was read whole.
    So N threads calling at once use N connections, and one thread calling in
    sequence uses one. An idle connection is checked for having been closed
    by the server before it is reused. The TLS context is made once, on first
    use, unless one was given.

    Forked processes: a child that inherited the pool never uses the parent's
    connections (two processes advancing one TLS stream break both; redis-py
    #1085 resets its pool in a child for this). The child's first use drops
    them, closing only its copies of the sockets: no TLS close_notify is
    sent, and the parent's connections stay open.
    """

    def __init__(
        self, ssl_context: ssl.SSLContext | None = None, proxy: str | None = None, trust_env: bool = True
    ):
        import os
        import threading

        self._lock = threading.Lock()
        self._ssl_context = ssl_context
        self._proxy = None if proxy is None else _Proxy(_require_str("proxy", proxy), "proxy")
        self._trust_env = trust_env
        self._routes: dict[Origin, _Proxy | None] = {}
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._open: set[http.client.HTTPConnection] = set()
        self._pid = os.getpid()

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's connections and lock (see the class docstring)."""
        import os
        import threading

        if os.getpid() == self._pid:
            return
        inherited, self._open, self._idle = list(self._open), set(), {}
        self._lock = threading.Lock()  # another thread of the parent may have held it
        self._pid = os.getpid()
        for connection in inherited:
            sock = connection.sock
            if isinstance(sock, _TimedSocket):
                with _suppress_os_error():
                    # SSLSocket.close() frees the TLS state without a close_notify;
                    # only this process's descriptor closes.
                    sock.sock.close()

    def context(self) -> ssl.SSLContext:
        """Return the TLS context: the one given, else one default context made on first use."""
        with self._lock:
            if self._ssl_context is None:
                import ssl

                self._ssl_context = ssl.create_default_context()
            return self._ssl_context

    def take(self, origin: Origin, deadline: float, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        """Return (connection, reused): an idle one still open (unless ``fresh``), else a new one."""
        self._after_fork()
        with self._lock:
            idle = [] if fresh else self._idle.get(origin, [])
            while idle:
                connection = idle.pop()
                if not _timed(connection).dropped():
                    return connection, True
                self._open.discard(connection)
                connection.close()
        connection = self._connect(origin, deadline)
        with self._lock:
            self._open.add(connection)
        return connection, False

    def _connect(self, origin: Origin, deadline: float) -> http.client.HTTPConnection:
        import http.client
        import socket

        scheme, host, port = origin
        left = max(deadline - time.monotonic(), 0.001)
        proxy = self.route(origin)
        if proxy is None:
            sock = socket.create_connection((host, port), timeout=left)
        else:
            sock = self._tunnel(proxy, host, port, left)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock = self.context().wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        connection = http.client.HTTPConnection(host, port)
        connection.default_port = DEFAULT_PORTS[scheme]  # Host: carries the port only when not default
        connection.auto_open = 0  # never let http.client reconnect by itself (it knows no TLS here)
        connection.sock = _TimedSocket(sock)
        return connection

    def route(self, origin: Origin) -> _Proxy | None:
        """Return the proxy requests to ``origin`` go through (read once per origin), or None."""
        scheme, host, _ = origin
        with self._lock:
            if origin not in self._routes:
                self._routes[origin] = _proxy_for(scheme, host, self._proxy, self._trust_env)
            return self._routes[origin]

    @staticmethod
    def _tunnel(proxy: _Proxy, host: str, port: int, timeout: float) -> socket.socket:
        """Return a socket tunnelled to host:port through ``proxy`` (CONNECT, RFC 9110 §9.3.6).

        The proxy sees only the CONNECT line (and Proxy-Authorization); the
        request, its signature and its answer travel inside TLS to the origin.
        """
        import http.client

        headers = {} if proxy.authorization is None else {"Proxy-Authorization": proxy.authorization}
        tunnel = http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout)
        tunnel.set_tunnel(host, port, headers=headers)
        try:
            tunnel.connect()
        except OSError as exc:
            tunnel.close()
            refused = re.search(r"Tunnel connection failed: (\d{3}.*)", str(exc))
            if refused is None:
                raise
            raise TransportError(
                f"the proxy {proxy.host}:{proxy.port} refused the tunnel to {host}:{port} "
                f"({_one_line(refused.group(1), 80)})",
            ) from None
        assert tunnel.sock is not None  # noqa: S101 (connect() made it)
        return tunnel.sock

    def give_back(self, origin: Origin, connection: http.client.HTTPConnection) -> None:
        """Keep a connection whose answer was read whole for the next exchange."""
        with self._lock:
            if connection in self._open and connection.sock is not None:
                idle = self._idle.setdefault(origin, [])
                if len(idle) < MAX_IDLE_CONNECTIONS:
                    idle.append(connection)
                    return
            self._open.discard(connection)
        connection.close()

    def discard(self, connection: http.client.HTTPConnection) -> None:
        """Close a connection that failed or was cut."""
        with self._lock:
            self._open.discard(connection)
        connection.close()

    def close(self) -> None:
        """Close every connection, idle or in use by any thread."""
        with self._lock:
            connections, self._open, self._idle = list(self._open), set(), {}
        for connection in connections:
            with _suppress_os_error():
                connection.close()

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
        limit: int,
        *,
        fresh: bool = False,
    ) -> Response:
        """Send one request on a kept-alive connection and return the answer, whatever its status.

        ``timeout`` bounds the whole exchange: connect, TLS, send, status line,
        headers and body. A 3xx is an answer like any other (never followed
        here). A reused connection that fails before any byte of the answer
        raises _StaleConnection; any other failure without a complete answer
        raises _NoAnswer; an answer too large or cut short in its body
        raises TransportError. Whether the request may go again is not the
        pool's to say. ``fresh`` opens a new connection.
        """
        import http.client
        import socket

        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname or "", parts.port or DEFAULT_PORTS[parts.scheme])
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        where = f"{method} {_display_url(url)}"
        deadline = time.monotonic() + timeout
        connection, reused = None, False
        try:
            connection, reused = self.take(origin, deadline, fresh)
            timed = _timed(connection)
            timed.deadline, timed.received = deadline, 0
            connection.request(method, target, body=body, headers=dict(headers))
            answer = connection.getresponse()
            if timed.reader is not None and timed.reader.cut:
                raise _NoAnswer(f"{where}: the answer was cut off in its headers")
            data = _read_body(answer, limit, where)
        except (OSError, http.client.HTTPException, ValueError, TransportError, _NoAnswer) as exc:
            if connection is not None:
                self.discard(connection)
            if isinstance(exc, (TransportError, _NoAnswer)):
                raise
            # socket.timeout is TimeoutError from Python 3.10 on; a distinct class in 3.9.
            timed_out = isinstance(exc, (TimeoutError, socket.timeout))
            if reused and timed.received == 0 and not timed_out:
                raise _StaleConnection(where) from None
            _logger_debug("%s %s -> no answer (%s)", method, url, type(exc).__name__)
            reason = (
                f"timed out: no complete answer within the timeout ({timeout:g} s)"
                if timed_out
                else _one_line(str(exc) or type(exc).__name__)
            )
            raise _NoAnswer(f"{where} failed: {reason}") from None
        self.give_back(origin, connection)
        _logger_debug("%s %s -> %s (Authorization: OAuth <redacted>)", method, url, answer.status)
        return Response(answer.status, answer.msg, data, url)  # type: ignore[arg-type]  # a Message reads as a mapping


# ---- E*TRADE: the session, the driver (sockets, store, locks, clock) ----


class _AccessTokens:
    """The session's access token, shared by its threads, and by processes through a TokenStore.

    The locking half of E*TRADE's token rules (the rules themselves are
    token_state and _renew_first): one renew for all threads, the others
    waiting for it and taking its outcome; no token regression, a request
    that finishes after a login or revoke never bringing the old token back;
    and before a renew or a "log in again", the store read for a newer token
    another process saved. The renew's network call is the session's,
    passed in as ``renew``; ``now`` is the session's clock.
    """

    def __init__(self, store: TokenStore | None, consumer_key: str, api_base: str, token: Token | None):
        import threading

        self.store, self._key, self._api_base = store, consumer_key, api_base
        self.current = token if token is not None or store is None else store.load(consumer_key, api_base)
        # Short critical sections only (the token); never held during I/O.
        self._lock = threading.Lock()
        # Held during the one renew that other threads must wait for.
        self.renew_lock = threading.Lock()
        self.renews_done = 0
        self._renew_error: OAuthError | None = None

    def usable(self, now: Callable[[], float], auto_renew: bool, renew: Callable[[Token], None]) -> Token:
        """Return the token for an API call, renewed first when idle; raise if there is none or it expired."""
        token = self.current
        try:
            renew_first = _renew_first(token, now(), auto_renew)
        except LoginRequiredError:
            token = self.stored_replacement(token)  # another process may have logged in
            if token is None:
                raise
            renew_first = _renew_first(token, now(), auto_renew)
        assert token is not None  # noqa: S101 (_renew_first raised for a missing one)
        return self.renew_once(token, now, renew) if renew_first else token

    def after_refusal(
        self,
        call: _CallCore,
        token: Token,
        renews_seen: int,
        now: Callable[[], float],
        renew: Callable[[Token], None],
    ) -> Token:
        """Return the token to send a call refused for its token with (_RESEND_WITH_NEW_TOKEN), or raise.

        A newer token that another process saved is used; else, when renewing
        may help, the token is renewed once for all threads (E*TRADE's sample
        clients also try renew before asking for a login). A failed renew
        raises its own error (log in again).
        """
        assert call.refusal is not None  # noqa: S101 (set with _RESEND_WITH_NEW_TOKEN)
        stored = self.stored_replacement(token)
        if stored is not None:
            _logger_debug("%s; using the newer access token another process saved", call.refusal.problem)
            return stored
        if not call.may_renew:
            raise call.refusal
        _logger_debug("%s; renewing the access token once, then sending again", call.refusal.problem)
        return self.renew_once(token, now, renew, renews_seen)

    def renew_once(
        self,
        token: Token,
        now: Callable[[], float],
        renew: Callable[[Token], None],
        renews_seen: int | None = None,
    ) -> Token:
        """Renew a token once for all threads; return the token to use.

        The first thread renews while holding the renew lock; threads that
        waited for it take its outcome: the renewed token, or a copy of its
        error. No other lock is held during the network call. Without
        ``renews_seen`` the token is idle here (renewed unless someone renewed
        it since); with it, the server refused the token: it is renewed
        unless a renew finished after ``renews_seen`` was read.
        """
        import copy

        refused = renews_seen is not None
        renews_seen = self.renews_done if renews_seen is None else renews_seen
        with self.renew_lock:
            current = self.current
            if self.renews_done != renews_seen:  # another thread renewed (or failed) meanwhile
                if self._renew_error is not None:
                    raise copy.copy(self._renew_error)
                if refused and current is not None:
                    return current
            if current is not None and (
                not current.same_as(token) or not refused and token_state(current, now()) == ACTIVE
            ):
                return current  # replaced (login, load) or renewed by another thread
            stored = self.stored_replacement(token)
            if stored is not None and (refused or token_state(stored, now()) == ACTIVE):
                return stored  # another process renewed or logged in
            error: OAuthError | None = None
            try:
                renew(token)
            except OAuthError as exc:
                error = exc
                raise
            finally:
                self._renew_error = error
                self.renews_done += 1
            return self.current or token

    def stored_replacement(self, token: Token | None) -> Token | None:
        """Return a newer access token another process saved in the store, now the session's; or None.

        Newer: another token issued later (a login), or the same token used
        later (a renew or a call).
        """
        if self.store is None:
            return None
        stored = self.store.load(self._key, self._api_base)
        if stored is None or token is not None and not stored.newer_than(token):
            return None
        with self._lock:
            current = self.current
            if current is None or token is None or current.same_as(token) or stored.newer_than(current):
                self.current = stored
        return stored

    def replace(self, token: Token) -> None:
        """Make ``token`` (a new login's) the session's token, and save it."""
        with self._lock:
            self.current = token
        self.save()

    def touch(self, token: Token | None, now: float) -> None:
        """Record that ``token`` was used at ``now``, if it is still the session's token."""
        with self._lock:
            current = self.current
            if (
                current is not None
                and token is not None
                and current.same_as(token)
                and now > current.last_used
            ):
                self.current = current.used_at(now)

    def save(self) -> None:
        """Save the session's token to the store, if there is one."""
        token = self.current
        if self.store is not None and token is not None:
            self.store.save(self._key, self._api_base, token)

    def forget(self, token: Token) -> None:
        """Forget a revoked token, here and in the store (a newer one stays)."""
        with self._lock:
            if self.current is not None and self.current.same_as(token):
                self.current = None
        if self.store is not None:
            self.store.delete(self._key, self._api_base, token=token)


class ETradeSession:
    """An E*TRADE OAuth 1.0a session: login, signed API calls, token lifetime.

    API calls go to ``api_base`` (production https://api.etrade.com, sandbox
    https://apisb.etrade.com; ``environment`` says "production", "sandbox"
    or "custom"); /oauth/* to ``oauth_base`` (``api_base`` when that is
    given, else https://api.etrade.com in both environments, as E*TRADE's
    sample client does); the user authorizes at ``authorize_base``.

    The driver of E*TRADE's rules: _renew_first says whether a token may be
    used (expired: TokenExpiredError, no network call; idle: renewed first,
    or TokenInactiveError with ``auto_renew=False``), _CallCore what an
    answer means. This class signs, sends through kept-alive connections
    (_Pool: ``ssl_context``, ``proxy``, ``trust_env``, ``timeout`` per
    exchange), paces to E*TRADE's rate limits (``pace``, ``rate_limits``),
    keeps the clock offset, and the token with _AccessTokens (``store``).
    ``clock`` replaces time.time; ``trace`` gets (method, url, Authorization
    header, Response) after each exchange. Any number of threads may share
    a session; ``close()``, or ``with``, closes its connections.
    """

    def __init__(
        self,
        consumer_key: str,
        consumer_secret: str,
        *,
        token: str | None = None,
        token_secret: str | None = None,
        sandbox: bool = False,
        api_base: str | None = None,
        oauth_base: str | None = None,
        authorize_base: str | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] | None = None,
        auto_renew: bool = True,
        store: TokenStore | None = None,
        token_issued_at: float | None = None,
        token_last_used: float | None = None,
        trace: Callable[[str, str, str, Response], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        pace: bool = True,
        rate_limits: Mapping[str, tuple[int, int]] | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
    ):
        import threading
        import weakref

        _check_session_options(consumer_key, consumer_secret, token, token_secret, timeout, trust_env)
        self.consumer_key = consumer_key
        self._consumer_secret = consumer_secret
        self.sandbox = bool(sandbox)
        self.api_base, self.oauth_base, self.authorize_base = _hosts(
            self.sandbox, api_base, oauth_base, authorize_base
        )
        self.environment = _environment_of(self.api_base)
        self.timeout = float(timeout)
        self.auto_renew = auto_renew
        self.store = store
        self.trace = trace
        self.clock_offset = 0.0
        self._clock = clock or time.time
        self._request_token: Token | None = None
        self.callback_confirmed = False
        self._offset_lock = threading.Lock()  # threads refused together learn one offset
        self._pool = _Pool(_checked_ssl_context(ssl_context), proxy, trust_env)
        self._pacer = _Pacer(_rate_limits(rate_limits) if pace else {})
        # Until an answer shows that the server takes this session's timestamps, one exchange
        # at a time: threads starting together cost one timestamp_refused round trip, not one each.
        self._offset_confirmed = False
        self._first_exchange = threading.Lock()
        # Closes the connections when the session is collected (the pool does not refer to it).
        self._finalizer = weakref.finalize(self, self._pool.close)
        given = None
        if token is not None and token_secret is not None:
            given = _given_token(token, token_secret, token_issued_at, token_last_used, self.now())
        self._tokens = _AccessTokens(store, consumer_key, self.api_base, given)

    def __repr__(self) -> str:
        state = "with an access token" if self._tokens.current else "without an access token"
        masked = _mask(self.consumer_key)
        return f"<ETradeSession {self.environment} {self.api_base} consumer_key={masked} {state}>"

    def now(self) -> float:
        """Return E*TRADE's time as this session knows it: its clock plus the offset learned
        from a timestamp_refused answer. Every time rule of the session (expiry, idle,
        request-token age) and every oauth_timestamp uses it."""
        return self._clock() + self.clock_offset

    # -- tokens and their lifetime --

    @property
    def access_token(self) -> Token | None:
        """The current access token (secret hidden from repr), or None."""
        return self._tokens.current

    @property
    def request_token(self) -> Token | None:
        """The pending request token, or None.

        Settable, to finish in one process a login another one started (it
        lives 5 minutes from ``issued_at``: E*TRADE, Get Request Token).
        """
        return self._request_token

    @request_token.setter
    def request_token(self, token: Token | None) -> None:
        if token is not None and not isinstance(token, Token):
            raise InvalidTypeError(f"request_token: expected Token or None, but got {type(token).__name__!r}")
        self._request_token = token

    def token_status(self) -> dict[str, Any]:
        """Return the access token's age, idle time, expiry and whether a renew is due."""
        return _token_report(self._tokens.current, self.now())

    # -- the driver: sign, send, and do what the call's core says --

    def _call(self, call: _CallCore, token: Token | None) -> Response:
        """Make the exchanges ``call`` allows (at most two; one at a time until the server has
        accepted a timestamp, see __init__); return the 2xx answer, its token marked used."""
        renews_seen, fresh = self._tokens.renews_done, False
        while True:
            if self._offset_confirmed:
                step, response = self._exchange(call, token, fresh)
            else:
                with self._first_exchange:
                    step, response = self._exchange(call, token, fresh)
            if step == _RETURN and response is not None:
                self._tokens.touch(token, self.now())
                return response
            fresh = step == _RESEND_STALE
            if step == _RESEND_WITH_NEW_TOKEN and token is not None:
                token = self._tokens.after_refusal(call, token, renews_seen, self.now, self._renew)

    def _exchange(self, call: _CallCore, token: Token | None, fresh: bool) -> tuple[str, Response | None]:
        """Sign ``call`` at this session's time, send it once (paced), and return the core's next step."""
        module = _api_module(urlsplit(call.url).path)
        paced = self._pacer.wait_for_turn(module)
        offset = self.clock_offset
        timestamp = make_timestamp(now=self._clock() + offset)
        authorization = call.authorization(self.consumer_key, self._consumer_secret, token, timestamp)
        headers = dict(call.headers, Authorization=authorization)
        try:
            response = self._pool.send(
                call.method, call.url, headers, call.body, self.timeout, call.limit, fresh=fresh
            )
        except _StaleConnection:
            _logger_debug("%s: kept-alive connection closed by the server", call.where)
            return call.stale(), None
        except _NoAnswer as failed:
            raise call.failed(str(failed)) from None
        finally:
            if paced:
                self._pacer.answered(module)
        if self.trace is not None:
            self.trace(call.method, call.url, authorization, response)
        try:
            step = call.answered(
                response, offset_used=offset, offset_now=self.clock_offset,
                local_time=self._clock(), token=token, auto_renew=self.auto_renew,
            )  # fmt: skip
        finally:  # learned even when the call may not retry: the next call uses it
            if call.clock_confirmed:  # only ever set: a refused thread must not close the gate again
                self._offset_confirmed = True
            if call.new_offset is not None:
                with self._offset_lock:  # threads refused together learn one offset
                    if self.clock_offset == offset:
                        self.clock_offset = call.new_offset
        if step != _RETURN:
            _logger_debug("%s: %s (clock offset %.0f s)", call.where, step, self.clock_offset)
        return step, response

    def close(self) -> None:
        """Close every kept-alive connection, whichever thread opened it (a later call opens one)."""
        self._pool.close()

    def __enter__(self) -> ETradeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the OAuth flow (E*TRADE: Authorization API) --

    def get_request_token(self, callback: str = "oob") -> tuple[str, str]:
        """Get a request token (E*TRADE: Get Request Token); return (token, secret).

        E*TRADE wants oauth_callback=oob even when a callback URL is
        registered. The request token lives 5 minutes.
        """
        url = self.oauth_base + _OAUTH_PATHS["request_token"]
        call = _CallCore("GET", url, "request token", oauth={"callback": callback})
        fields = _parse_token_response(self._call(call, None), "request token")
        self._request_token = Token(fields["oauth_token"], fields["oauth_token_secret"], self.now())
        self.callback_confirmed = fields.get("oauth_callback_confirmed", "").lower() == "true"
        return self._request_token.token, self._request_token.secret

    def authorize_url(self) -> str:
        """Return the page where the user approves this application (E*TRADE: Authorize Application).

        ``key`` and ``token`` are percent-encoded: request tokens hold "/", "+" and "=".
        """
        if self._request_token is None:
            raise _advised(UsageError, "no request token", "get a request token")
        key, token = percent_encode(self.consumer_key), percent_encode(self._request_token.token)
        return f"{self.authorize_base}?key={key}&token={token}"

    def get_access_token(self, verifier: str) -> tuple[str, str]:
        """Exchange the verifier for an access token (E*TRADE: Get Access Token); return (token, secret).

        ``verifier`` is the code E*TRADE showed, or the whole callback URL the
        user landed on (its ``oauth_verifier`` is taken).
        """
        verifier = _verifier_from(verifier)
        try:
            request_token = _exchangeable_request_token(self._request_token, self.now())
        except TokenExpiredError:
            self._request_token = None
            raise
        url = self.oauth_base + _OAUTH_PATHS["access_token"]
        call = _CallCore(
            "GET", url, "access token", problems=_ACCESS_TOKEN_PROBLEMS, oauth={"verifier": verifier}
        )
        fields = _parse_token_response(self._call(call, request_token), "access token")
        self._request_token = None
        token = Token(fields["oauth_token"], fields["oauth_token_secret"], self.now())
        self._tokens.replace(token)
        return token.token, token.secret

    def renew_access_token(self) -> None:
        """Re-activate the access token after 2 idle hours (E*TRADE: Renew Access Token).

        An expired token (past midnight US Eastern) cannot be renewed: that
        raises TokenExpiredError without a network call. Threads share one
        renew (see _AccessTokens for the automatic one).
        """
        token = self._tokens.current or self._tokens.stored_replacement(None)
        if token is None:
            raise _advised(LoginRequiredError, "no access token to renew", "log in first")
        with self._tokens.renew_lock:
            self._renew(token)

    def _renew(self, token: Token) -> None:
        """Send Renew Access Token for ``token`` (marked used by the answer), then save it."""
        _check_renewable(token, self.now())
        url = self.oauth_base + _OAUTH_PATHS["renew_access_token"]
        self._call(_CallCore("GET", url, "renew access token"), token)
        self._tokens.save()

    def revoke_access_token(self) -> None:
        """End the access token (E*TRADE: Revoke Access Token) and forget it, in the store too."""
        token = self._tokens.current
        if token is None:
            raise UsageError("no access token to revoke")
        url = self.oauth_base + _OAUTH_PATHS["revoke_access_token"]
        self._call(_CallCore("GET", url, "revoke access token"), token)
        self._tokens.forget(token)

    # -- API calls --

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        body: str | bytes | Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        json: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send a signed API call and return its Response; non-2xx raises the OAuthError family.

        ``path_or_url`` is a path under ``api_base`` ("/v1/accounts/list.json")
        or a full URL. ``params`` are added to the query, encoded as they are
        signed (RFC 5849 §3.6, so spaces, "+", "," and ":" cannot break the
        signature). A mapping or pairs ``body`` is sent form-encoded and signed;
        ``json`` is sent as application/json and not signed (RFC 5849 signs form
        bodies only); a str/bytes ``body`` is sent as is, signed only when its
        Content-Type header is form-encoded.
        """
        url, data, sent_headers = _api_request(self.api_base, path_or_url, params, body, json, headers)
        method = _require_str("method", method).upper()
        action = f"{method} {_display_url(url)}"
        call = _CallCore(
            method, url, action, body=data, headers=sent_headers, limit=MAX_API_RESPONSE, api=True
        )
        return self._call(call, self._tokens.usable(self.now, self.auto_renew, self._renew))

    def get(self, path_or_url: str, **kwargs: Any) -> Response:
        """Send a signed GET (see request)."""
        return self.request("GET", path_or_url, **kwargs)

    def auth(self) -> OAuth1Auth:
        """Return an OAuth1Auth signing with this session's access token (for requests, httpx, urllib)."""
        token = self._tokens.usable(self.now, self.auto_renew, self._renew)
        return OAuth1Auth(self.consumer_key, self._consumer_secret, token.token, token.secret)


# ---- E*TRADE: adapters for urllib, requests and httpx ----


class OAuth1Auth:
    """Signs requests for other HTTP clients, with no import of theirs.

    - requests: ``requests.get(url, auth=OAuth1Auth(...))`` (called with the prepared request);
    - httpx: ``httpx.get(url, auth=OAuth1Auth(...))`` (``auth_flow``, or called);
    - urllib: ``urllib.request.build_opener(OAuth1Auth(...).urllib_handler())``.

    The query and a form-encoded body are signed (RFC 5849 §3.4.1.3.1).
    """

    def __init__(
        self,
        consumer_key: str,
        consumer_secret: str,
        token: str | None = None,
        token_secret: str = "",
        *,
        realm: str | None = None,
    ):
        self.consumer_key = consumer_key
        self._consumer_secret = consumer_secret
        self.token = token
        self._token_secret = token_secret
        self.realm = realm

    def __repr__(self) -> str:
        return f"<OAuth1Auth consumer_key={_mask(self.consumer_key)} token={'yes' if self.token else 'no'}>"

    def sign(
        self, method: str, url: str, body: str | bytes | None = None, content_type: str | None = None
    ) -> str:
        """Return the Authorization header value for this request."""
        return sign_request(
            method,
            url,
            consumer_key=self.consumer_key,
            consumer_secret=self._consumer_secret,
            token=self.token,
            token_secret=self._token_secret,
            body=body,
            content_type=content_type,
            realm=self.realm,
        )

    def __call__(self, request: Any) -> Any:
        """Sign a requests PreparedRequest or an httpx Request in place and return it."""
        headers = request.headers
        if hasattr(request, "body"):  # requests.PreparedRequest
            body = request.body
            if body is not None and not isinstance(body, (str, bytes)):
                body = None  # a streamed body cannot be form-encoded fields
        else:  # httpx.Request
            body = request.content
        method, url = request.method, request.url
        headers["Authorization"] = self.sign(str(method), str(url), body, headers.get("Content-Type"))
        return request

    def auth_flow(self, request: object) -> Iterable[object]:
        """httpx's auth interface: sign the request and send it once."""
        yield self(request)

    def urllib_handler(self) -> object:
        """Return a urllib.request handler that signs every request it sees."""
        import urllib.request

        auth = self

        class OAuth1Handler(urllib.request.BaseHandler):
            # After HTTPHandler's own pre-processing (500), which sets the
            # default form Content-Type that decides whether the body is signed.
            handler_order = 600

            def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
                body = request.data if isinstance(request.data, (bytes, str)) else None
                header = auth.sign(
                    request.get_method(), request.full_url, body, request.get_header("Content-type")
                )
                # unredirected: never forwarded if urllib follows a redirect
                request.add_unredirected_header("Authorization", header)
                return request

            https_request = http_request

        return OAuth1Handler()


# ============================================================================
# Part III. Tools that nothing above needs
# The offline E*TRADE emulator and the command line.
# ============================================================================

# ---- Offline E*TRADE emulator ----


class ManualClock:
    """A clock that stands still until advanced: ``clock()`` reads it, ``advance(s)`` moves it."""

    def __init__(self, start: float | None = None):
        self.now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds

    def __repr__(self) -> str:
        return f"ManualClock({self.now:.0f})"


class _Refusal(Exception):
    """A refusal the emulator answers with: status, and an OAuth problem with its fields, or
    E*TRADE's error code and message for an API error, or the rate limit."""

    def __init__(
        self,
        status: int,
        problem: str | None = None,
        *,
        code: int | None = None,
        message: str | None = None,
        rate_limited: bool = False,
        **fields: str,
    ):
        super().__init__(problem or message or "refused")
        self.status = status
        self.problem = problem
        self.code = code
        self.message = message
        self.rate_limited = rate_limited
        self.fields = fields

    def problem_text(self) -> str:
        """Return the problem and its fields joined by commas, as E*TRADE's pages have them
        (``oauth_problem=timestamp_refused,oauth_acceptable_timestamps=A-B``, pyetrade #55)."""
        pairs = {"oauth_problem": self.problem or "", **self.fields}
        return ",".join(f"{name}={value}" for name, value in pairs.items())


#: HTTP reason phrases of the statuses the emulator refuses with.
_REASONS: Mapping[int, str] = MappingProxyType(
    {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
)

# E*TRADE's OAuth refusal page as Tomcat renders it since about 2021 (pyetrade
# #52; vectors/etrade-answers.json): the status with an en dash, and the
# problem as the Message.
_TOMCAT_STYLE = (
    "h1 {font-family:Tahoma,Arial,sans-serif;color:white;background-color:#525D76;font-size:22px;} "
    "h2 {font-family:Tahoma,Arial,sans-serif;color:white;background-color:#525D76;font-size:16px;} "
    "h3 {font-family:Tahoma,Arial,sans-serif;color:white;background-color:#525D76;font-size:14px;} "
    "body {font-family:Tahoma,Arial,sans-serif;color:black;background-color:white;} "
    "b {font-family:Tahoma,Arial,sans-serif;color:white;background-color:#525D76;} "
    "p {font-family:Tahoma,Arial,sans-serif;background:white;color:black;font-size:12px;} "
    "a {color:black;} a.name {color:black;} .line {height:1px;background-color:#525D76;border:none;}"
)
_TOMCAT_PAGE = (
    '<!doctype html><html lang="en"><head><title>HTTP Status {status} \u2013 {reason}</title>'
    '<style type="text/css">{style}</style></head><body><h1>HTTP Status {status} \u2013 {reason}</h1>'
    '<hr class="line" /><p><b>Type</b> Status Report</p><p><b>Message</b> {message}</p>'
    "<p><b>Description</b> The request has not been applied because it lacks valid authentication "
    'credentials for the target resource.</p><hr class="line" /></body></html>'
)
# E*TRADE: Rate Limits ("Number of requests exceeded the rate limit set"); the
# words are E*TRADE's, the HTML around them is not recorded.
_RATE_LIMIT_PAGE = (
    "<html><head><title>Error</title></head><body>"
    "<h1>Number of requests exceeded the rate limit set</h1></body></html>"
)


def _tomcat_page(status: int, message: str) -> str:
    """Return E*TRADE's Tomcat error page for ``status`` with ``message`` (HTML-escaped)."""
    import html

    return _TOMCAT_PAGE.format(
        status=status, reason=_REASONS.get(status, "Error"), style=_TOMCAT_STYLE, message=html.escape(message)
    )


class _Grant:
    """A token the emulator issued (a Token: its secret, when it was issued and last used), and
    for a request token the user's decision ("pending", "approved", "denied") and the verifier."""

    __slots__ = ("state", "token", "verifier")

    def __init__(self, token: Token, state: str = "active"):
        self.token = token
        self.state = state
        self.verifier: str | None = None


def _random_token() -> str:
    """Return a token in E*TRADE's style: base64 of 32 random bytes (holds "/", "+", "=")."""
    import os

    return binascii.b2a_base64(os.urandom(32), newline=False).decode()


def _random_verifier() -> str:
    """Return a verifier code in E*TRADE's style: 5 uppercase letters and digits."""
    import secrets

    return "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(5))


_EMULATOR_ACCOUNTS = [
    {
        "accountId": "83405188",
        "accountIdKey": "dBZOKt9xDrtRSAOl4MSiiA",
        "accountMode": "MARGIN",
        "accountDesc": "Brokerage",
        "accountName": "Emulated brokerage",
        "accountType": "INDIVIDUAL",
        "institutionType": "BROKERAGE",
        "accountStatus": "ACTIVE",
        "closedDate": 0,
    },
    {
        "accountId": "83405553",
        "accountIdKey": "f6Hn2GkEW3rWsbUqQqtBtQ",
        "accountMode": "IRA",
        "accountDesc": "Rollover IRA",
        "accountName": "Emulated IRA",
        "accountType": "ROLLOVER_IRA",
        "institutionType": "BROKERAGE",
        "accountStatus": "ACTIVE",
        "closedDate": 0,
    },
]


def _emulator_quote(symbol: str, now: float) -> dict[str, object]:
    """Return deterministic sample quote data for ``symbol``."""
    cents = 1000 + binascii.crc32(symbol.encode()) % 90000
    last = cents / 100
    return {
        "dateTimeUTC": int(now),
        "quoteStatus": "DELAYED",
        "ahFlag": "false",
        "Product": {"symbol": symbol, "securityType": "EQ"},
        "All": {
            "lastTrade": last,
            "bid": round(last - 0.01, 2),
            "ask": round(last + 0.01, 2),
            "symbolDescription": f"{symbol} (emulated)",
            "totalVolume": cents * 37 % 1000000,
        },
    }


def _to_xml(name: str, value: object) -> str:
    """Return a small XML rendering of nested dicts and lists (E*TRADE's default format)."""
    from xml.sax.saxutils import escape

    if isinstance(value, dict):
        inner = "".join(_to_xml(k, v) for k, v in value.items())
    elif isinstance(value, list):
        return "".join(_to_xml(name, item) for item in value)
    else:
        inner = escape(str(value))
    return f"<{name}>{inner}</{name}>"


def _check_callback_url(url: str) -> str:
    """Return ``url`` if it is an absolute http(s) URL with a host and no control characters or spaces."""
    _require_str("callback_url", url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"[\x00-\x20\x7f]", url):
        raise InvalidValueError(
            "callback_url: expected an absolute http(s) URL without spaces or control characters, "
            f"not {_one_line(url, 80)!r}"
        )
    return url


def _page_headers(callback_url: str | None) -> dict[str, str]:
    """Return the security headers of the emulator's HTML pages (the authorize page and its results).

    No framing (clickjacking on Approve), no caching, nothing loaded from
    elsewhere. NOTE: form-action also governs where the form's answer may
    redirect, so the registered callback's origin must be listed beside
    'self', or browsers block Approve's redirect to it.
    """
    form_action = "'self'"
    if callback_url is not None:
        parts = urlsplit(callback_url)
        form_action += f" {parts.scheme}://{parts.netloc}"
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
        f"frame-ancestors 'none'; form-action {form_action}"
    )
    return {"X-Frame-Options": "DENY", "Content-Security-Policy": policy, "Cache-Control": "no-store"}


_AUTHORIZE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>E*TRADE authorization (emulated)</title></head>
<body><h1>Authorize {application}?</h1>
<p><b>{application}</b> asks to use your E*TRADE account through the API
(offline emulator of oauth1_etrade).</p>
<form method="post" action="/e/t/etws/authorize">
<input type="hidden" name="key" value="{key}"><input type="hidden" name="token" value="{token}">
<button type="submit" name="decision" value="approve" id="approve">Approve</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form></body></html>
"""

# A page with one heading and one paragraph: the emulator's results and the login listener's answers.
_RESULT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p></body></html>
"""


# The methods each emulated path takes: E*TRADE documents GET for the four
# /oauth/* endpoints, and production also answers POST to them
# (requests-oauthlib and pyetrade POST; pyetrade #5, #16, #47).
_EMULATOR_METHODS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        **{path: ("GET", "POST") for path in _OAUTH_PATHS.values()},
        "/e/t/etws/authorize": ("GET", "POST"),
    }
)


def _authorize_query(query: str) -> tuple[str | None, str | None]:
    """Return the key and token of an authorize URL's query, percent-decoded and nothing else.

    pyetrade and E*TRADE's own sample put the request token in unencoded, so a
    "+" in it must stay a "+" (a form decoder would read a space).
    """
    found: dict[str, str] = {}
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name in ("key", "token") and name not in found:
            found[name] = unquote(value)
    return found.get("key"), found.get("token")


def _serve_in_background(
    port: int, handler: type[http.server.BaseHTTPRequestHandler], name: str
) -> http.server.ThreadingHTTPServer:
    """Serve 127.0.0.1:port (0: any free port) with ``handler`` on daemon threads; return the
    server, running in a background thread until its shutdown().

    For the emulator and the login listener alike: a client that hangs up or
    sends garbage is a debug log line, not a traceback; the listen backlog
    holds 32 client threads connecting at once (the default 5 made some of
    them stall for 1-3 s); a 50 ms poll lets shutdown() return at once, for
    20 idle wake-ups a second.
    """
    import http.server
    import threading

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

        def handle_error(self, request: object, client_address: object) -> None:
            _logger_debug("%s: connection from %s failed: %s", name, client_address, sys.exc_info()[1])

    server = Server(("127.0.0.1", port), handler)
    serve = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"oauth1_etrade {name}"
    )
    serve.daemon = True
    serve.start()
    return server


def _emulator_handler(emulator: Emulator) -> type[http.server.BaseHTTPRequestHandler]:
    """Return the http.server request handler class bound to ``emulator``."""
    import html
    import http.server
    import json

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "oauth1_etrade-emulator"
        # HTTP/1.1: a client keeps its connection for many calls, as with E*TRADE.
        protocol_version = "HTTP/1.1"
        timeout = 30  # an idle connection gives up its thread
        reason = ""  # why the current request was refused, for the log

        def handle(self) -> None:
            import socket

            # A TLS ClientHello (first byte 0x16) has no line end: http.server
            # would wait on it for ever. Say what happened and hang up.
            if self.request.recv(1, socket.MSG_PEEK) == b"\x16":
                _logger_debug(
                    "emulator: a TLS handshake from %s; the emulator speaks plain http", self.client_address
                )
                return
            super().handle()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            _logger_debug("emulator: " + format, *args)

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            status = getattr(code, "value", code)  # an HTTPStatus, or "-"
            # A request line that did not parse leaves command and path unset.
            command, path = getattr(self, "command", None) or "-", getattr(self, "path", "") or ""
            line = f"{command} {urlsplit(path).path} -> {status}"
            emulator.log.append(line)
            # The path only: queries and headers may carry signatures and tokens.
            _logger_debug("emulator: %s%s", _one_line(line), f" ({self.reason})" if self.reason else "")
            self.reason = ""

        def date_time_string(self, timestamp: float | None = None) -> str:
            # The Date header follows the emulator's clock (for clock-skew tests).
            return super().date_time_string(emulator.clock() if timestamp is None else timestamp)

        def _send_body(
            self, status: int, body: str, content_type: str, extra: Mapping[str, str] = {}
        ) -> None:  # noqa: B006
            data = body.encode("utf-8")
            self.send_response(status)
            if status != 204:  # RFC 9110 §8.6: no Content-Length, no body in a 204
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
            if content_type.startswith("text/html"):
                for name, value in _page_headers(emulator.callback_url).items():
                    self.send_header(name, value)
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD" and status != 204:
                self.wfile.write(data)

        def _wants_json(self, path: str) -> bool:
            return path.endswith(".json") or "application/json" in self.headers.get("Accept", "")

        def _refuse(self, refusal: _Refusal, path: str) -> None:
            """Answer as E*TRADE refuses: its Tomcat page for OAuth, its Error envelope for the API."""
            self.reason = refusal.problem or (f"code {refusal.code}" if refusal.code else "") or "refused"
            extra: dict[str, str] = {}
            if refusal.problem:
                extra["WWW-Authenticate"] = f'OAuth realm="{emulator.base_url}/",{refusal.problem_text()}'
            if refusal.rate_limited:
                self.reason = "rate limit"
                self._send_body(refusal.status, _RATE_LIMIT_PAGE, "text/html;charset=utf-8")
            elif path.startswith("/v1/"):
                message = refusal.message or refusal.problem_text()
                error: dict[str, object] = {"message": message}
                if refusal.code is not None:
                    error = {"code": refusal.code, "message": message}
                if self._wants_json(path):
                    self._send_body(refusal.status, json.dumps({"Error": error}), "application/json", extra)
                else:
                    document = '<?xml version="1.0" encoding="UTF-8"?>' + _to_xml("Error", error)
                    self._send_body(refusal.status, document, "application/xml", extra)
            else:
                page = _tomcat_page(refusal.status, refusal.problem_text())
                self._send_body(refusal.status, page, "text/html;charset=utf-8", extra)

        def _url(self) -> str:
            return f"http://{self.headers.get('Host', '127.0.0.1')}{self.path}"

        def _body(self) -> tuple[bytes, str | None] | None:
            """Return the request body and its Content-Type, or answer 413 and return None."""
            length = self.headers.get("Content-Length") or "0"
            if not (length.isascii() and length.isdigit()) or int(length) > 65536:
                self.close_connection = True
                self._send_body(413, "a body of at most 65536 bytes, with its Content-Length", "text/plain")
                return None
            return self.rfile.read(int(length)), self.headers.get("Content-Type")

        def _serve(self) -> None:
            """Answer GET and POST: the OAuth endpoints, the authorize page, the API."""
            path = urlsplit(self.path).path
            allowed = _EMULATOR_METHODS.get(path) or (("GET",) if path.startswith("/v1/") else None)
            if allowed is not None and self.command not in allowed:
                self._not_allowed(allowed)
                return
            received = self._body()
            if received is None:
                return
            body, content_type = received
            request = (self.command, path, self._url(), self.headers.get("Authorization"), body, content_type)
            try:
                if path.startswith("/oauth/"):
                    status, text = emulator.handle_oauth(*request)
                    self._send_body(status, text, "text/plain" if "=" not in text else FORM_CONTENT_TYPE)
                elif path == "/e/t/etws/authorize":
                    self._authorize(body)
                elif path.startswith("/v1/"):
                    data = emulator.handle_api(*request)
                    self._send_data(path, data)
                else:
                    raise _Refusal(404, code=100, message="Resource not found")
            except _Refusal as refusal:
                self._refuse(refusal, path)

        do_GET = do_POST = _serve  # noqa: N815

        def _send_data(self, path: str, data: object) -> None:
            if data is None:  # an empty collection: E*TRADE answers 204 with no body
                self._send_body(204, "", "")
            elif self._wants_json(path):
                self._send_body(200, json.dumps(data, indent=2), "application/json")
            else:
                ((name, value),) = data.items()  # type: ignore[attr-defined]
                body = '<?xml version="1.0" encoding="UTF-8"?>' + _to_xml(name, value)
                self._send_body(200, body, "application/xml")

        def _authorize(self, body: bytes) -> None:
            if self.command == "GET":
                self._authorize_page()
                return
            form = dict(_parse_form(body.decode("utf-8", errors="replace")))
            key, token = str(form.get("key", "")), str(form.get("token", ""))
            try:
                verifier = emulator.authorize(key, token, form.get("decision") == "approve")
            except _Refusal:
                self._result(400, "Invalid request", "Unknown or expired request token.")
                return
            if verifier is None:
                self._result(200, "Access denied", "You denied the application access.")
            elif emulator.callback_url:
                joiner = "&" if "?" in emulator.callback_url else "?"
                query = f"oauth_verifier={verifier}&oauth_token={percent_encode(token)}"
                location = f"{emulator.callback_url}{joiner}{query}"
                self._send_body(302, "", "text/plain", {"Location": location})
            else:
                text = (
                    f'Enter this verification code in the application: <code id="verifier">{verifier}</code>'
                )
                self._result(200, "Authorization complete", text)

        def _authorize_page(self) -> None:
            key, token = _authorize_query(urlsplit(self.path).query)
            token = emulator.pending_request_token(key, token)
            if token is None:
                self._result(400, "Invalid request", "Unknown key or request token.")
                return
            page = _AUTHORIZE_PAGE.format(
                application=html.escape(emulator.application),
                key=html.escape(str(key)),
                token=html.escape(token),
            )
            self._send_body(200, page, "text/html; charset=utf-8")

        def _result(self, status: int, title: str, text: str) -> None:
            page = _RESULT_PAGE.format(title=f"E*TRADE (emulated): {title}", text=text)
            self._send_body(status, page, "text/html; charset=utf-8")

        def _not_allowed(self, allowed: Sequence[str] = ()) -> None:
            """Answer 405 with the methods the path takes (RFC 9110 §15.5.6: Allow is required)."""
            if self.headers.get("Content-Length") not in (None, "0"):
                self.close_connection = True  # its body is not read
            path = urlsplit(self.path).path
            allowed = allowed or _EMULATOR_METHODS.get(path) or ("GET",)
            self.reason = f"{self.command} not allowed"
            methods = ", ".join(allowed)
            text = f"{self.command} is not allowed here; use {methods}"
            self._send_body(405, text, "text/plain", {"Allow": methods})

        def do_PUT(self) -> None:  # noqa: N802
            self._not_allowed()

        do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_PUT  # noqa: N815

    return Handler


class Emulator:
    """An offline stand-in for E*TRADE's OAuth provider and a few read-only API resources.

    It serves HTTP/1.1 on 127.0.0.1 only (http.server, threaded, kept-alive
    connections) and enforces E*TRADE's rules: every signature checked with
    verify_request, the OAuth parameters in the Authorization header, the
    query or a form body (one place only, RFC 5849 §3.5), HMAC-SHA1 only,
    timestamps within 5 minutes, a nonce used once per timestamp, request
    tokens that live 5 minutes, verifiers used once, access tokens that
    expire at midnight US Eastern and go inactive after 2 idle hours until
    renewed, revocation, and the per-module rate limits. It answers as
    E*TRADE does (vectors/etrade-answers.json): OAuth refusals as Tomcat
    error pages with comma-joined problem fields and a WWW-Authenticate
    header, API errors as the JSON or XML Error envelope, the rate limit as
    HTTP 400 with a page, an empty collection as 204.

    What E*TRADE does not document is a switch (README, "The offline
    emulator"): ``idle_problem``, what an idle token gets (token_rejected,
    as clients report; or token_inactive, token_expired);
    ``second_login_revokes``, whether a new login revokes the consumer key's
    older access tokens (default False); ``rate_limits``, module -> (per
    second, per hour), E*TRADE's published limits by default, None for none.
    ``clock`` is injectable; ``callback_url`` plays a callback registered
    with the consumer key.
    """

    IDLE_PROBLEMS = ("token_rejected", "token_inactive", "token_expired")

    def __init__(
        self,
        *,
        consumer_key: str = "oauth1-etrade-emulator",
        consumer_secret: str | None = None,
        callback_url: str | None = None,
        clock: Callable[[], float] | None = None,
        port: int = 0,
        application: str = "oauth1_etrade demo application",
        idle_problem: str = "token_rejected",
        second_login_revokes: bool = False,
        rate_limits: Mapping[str, tuple[int, int]] | None = ETRADE_RATE_LIMITS,
    ):
        import threading

        if idle_problem not in self.IDLE_PROBLEMS:
            raise InvalidValueError(f"idle_problem: expected one of {', '.join(self.IDLE_PROBLEMS)}")
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret or _random_token()
        self.callback_url = None if callback_url is None else _check_callback_url(callback_url)
        self.clock = clock or time.time
        self.application = application
        self.idle_problem = idle_problem
        self.second_login_revokes = bool(second_login_revokes)
        self.rate_limits = None if rate_limits is None else _rate_limits(rate_limits)
        self._port = port
        self._lock = threading.Lock()
        self._request_tokens: dict[str, _Grant] = {}
        self._access_tokens: dict[str, _Grant] = {}
        self._nonces: dict[int, set[str]] = {}
        self._arrivals: dict[str, list[float]] = {}
        self._server: http.server.ThreadingHTTPServer | None = None
        #: "METHOD /path -> status" for every request served, in order.
        self.log: list[str] = []

    def __repr__(self) -> str:
        return f"<Emulator {self.base_url if self._server else 'stopped'} consumer_key={self.consumer_key!r}>"

    # -- running --

    @property
    def base_url(self) -> str:
        """The emulator's base URL, http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def authorize_base(self) -> str:
        """The emulated authorize page."""
        return self.base_url + "/e/t/etws/authorize"

    def start(self) -> Emulator:
        """Start serving in a background thread; return self."""
        server = _serve_in_background(self._port, _emulator_handler(self), "emulator")
        self._port = server.server_address[1]
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what a test or a user at E*TRADE's side may do --

    def revoke(self, token: str | None = None) -> None:
        """Revoke an access token at the provider (every one without ``token``), as a user
        revoking the application on E*TRADE's site would."""
        with self._lock:
            if token is None:
                self._access_tokens.clear()
            else:
                self._access_tokens.pop(token, None)

    def access_tokens(self) -> list[tuple[str, str]]:
        """Return the live access tokens and their secrets (the emulator's own, for tests)."""
        with self._lock:
            return [(token, grant.token.secret) for token, grant in self._access_tokens.items()]

    def pending_request_token(self, key: str | None, token: str | None) -> str | None:
        """Return the request token the authorize page names, if it awaits the user's decision.

        A "+" that a form decoder read as a space still finds the token.
        """
        if key != self.consumer_key or token is None:
            return None
        with self._lock:
            for candidate in (token, token.replace(" ", "+")):
                grant = self._request_tokens.get(candidate)
                if grant is not None and grant.state == "pending":
                    return candidate
        return None

    # -- the rules --

    def _oauth_parameters(
        self, url: str, authorization: str | None, body: list[Param]
    ) -> tuple[dict[str, str], str | None]:
        """Return the OAuth protocol parameters and the header they came in (None: query or body).

        RFC 5849 §3.5: in the Authorization header, a form body or the query,
        and in one place only; E*TRADE: Get Access Token allows the query.
        """
        query = [(n, v) for n, v in _parse_form(url.partition("?")[2]) if str(n).startswith("oauth_")]
        in_body = [(n, v) for n, v in body if str(n).startswith("oauth_")]
        header = authorization if authorization and authorization.lstrip()[:5].lower() == "oauth" else None
        places = [place for place in (header, query, in_body) if place]
        if len(places) > 1:
            # §3.5: "MUST NOT use more than one method for each request"
            raise _Refusal(400, "parameter_rejected")
        if header is not None:
            try:
                return parse_authorization_header(header), header
            except ValueError:
                raise _Refusal(400, "parameter_rejected") from None
        located = query or in_body
        if not located:
            raise _Refusal(401, "parameter_absent", oauth_parameters_absent="oauth_consumer_key")
        names = [n for n, _ in located]
        if len(set(names)) != len(names) or not all(isinstance(v, str) for _, v in located):
            raise _Refusal(400, "parameter_rejected")
        return {str(n): str(v) for n, v in located}, None

    def _authenticate(
        self,
        method: str,
        url: str,
        authorization: str | None,
        kind: str,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> tuple[dict[str, str], _Grant]:
        """Check an OAuth request; return its parameters and the token it names (an empty one for none).

        ``kind`` is "consumer" (no token), "request" or "access".
        """
        try:
            form = _body_parameters(body, content_type) if _is_form(content_type) else []
        except ValueError:
            raise _Refusal(400, "parameter_rejected") from None
        params, header = self._oauth_parameters(url, authorization, form)
        required = ["oauth_consumer_key", "oauth_signature_method", "oauth_signature", "oauth_timestamp",
                    "oauth_nonce"]  # fmt: skip
        if kind != "consumer":
            required.append("oauth_token")
        missing = [name for name in required if name not in params]
        if missing:
            raise _Refusal(400, "parameter_absent", oauth_parameters_absent="&".join(missing))
        if params["oauth_signature_method"] != "HMAC-SHA1":
            raise _Refusal(400, "signature_method_rejected")
        if params["oauth_consumer_key"] != self.consumer_key:
            raise _Refusal(401, "consumer_key_unknown")
        now = int(self.clock())
        timestamp = params["oauth_timestamp"]
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or (
            abs(int(timestamp) - now) > TIMESTAMP_TOLERANCE
        ):
            window = f"{now - TIMESTAMP_TOLERANCE}-{now + TIMESTAMP_TOLERANCE}"
            raise _Refusal(401, "timestamp_refused", oauth_acceptable_timestamps=window)
        record = _Grant(Token("", "", 0.0))  # the consumer alone: no token secret
        if kind != "consumer":
            table = self._request_tokens if kind == "request" else self._access_tokens
            found = table.get(params["oauth_token"])
            if found is None:
                raise _Refusal(401, "token_rejected")
            record = found
        secret = record.token.secret
        try:
            good = verify_request(
                method, url, header, consumer_secret=self.consumer_secret, token_secret=secret,
                body=body or None, content_type=content_type,
            )  # fmt: skip
        except ValueError:
            good = False
        if not good:
            raise _Refusal(401, "signature_invalid")
        seen = self._nonces.setdefault(int(timestamp), set())
        if params["oauth_nonce"] in seen:
            raise _Refusal(401, "nonce_used")
        seen.add(params["oauth_nonce"])
        for old in [t for t in self._nonces if t < now - 2 * TIMESTAMP_TOLERANCE]:
            del self._nonces[old]
        return params, record

    def _count_against_the_rate_limit(self, path: str) -> None:
        """Refuse a request over E*TRADE's per-module limits (E*TRADE: Rate Limits; per consumer key,
        and this emulator knows one key): HTTP 400 with E*TRADE's page. Counted in real time."""
        module = _api_module(path)
        if self.rate_limits is None or module is None or module not in self.rate_limits:
            return
        per_second, per_hour = self.rate_limits[module]
        now = time.monotonic()
        arrivals = self._arrivals.setdefault(module, [])
        arrivals[:] = [t for t in arrivals if t > now - 3600]
        if len(arrivals) >= per_hour or sum(1 for t in arrivals if t > now - 1.0) >= per_second:
            raise _Refusal(400, rate_limited=True)
        arrivals.append(now)

    def _issue_request_token(self, params: Mapping[str, str]) -> dict[str, str]:
        # E*TRADE: oauth_callback must be "oob", even with a registered callback
        # (rasesh6/etrade-trading: 400 callback_rejected,oauth_acceptable_callback=oob).
        if params.get("oauth_callback") != "oob":
            raise _Refusal(400, "callback_rejected", oauth_acceptable_callback="oob")
        token, secret = _random_token(), _random_token()
        self._request_tokens[token] = _Grant(Token(token, secret, self.clock()), "pending")
        confirmed = "true" if self.callback_url else "false"
        return {"oauth_token": token, "oauth_token_secret": secret, "oauth_callback_confirmed": confirmed}

    def _issue_access_token(self, record: _Grant, params: Mapping[str, str]) -> dict[str, str]:
        token = params["oauth_token"]
        # A wrong, used or stale verifier is token_rejected at E*TRADE (pyetrade #5).
        if request_token_time_left(record.token, self.clock()) <= 0:
            del self._request_tokens[token]
            raise _Refusal(401, "token_rejected")
        if record.state != "approved" or params.get("oauth_verifier") != record.verifier:
            raise _Refusal(401, "token_rejected")
        del self._request_tokens[token]  # the verifier and request token are single-use
        if self.second_login_revokes:
            self._access_tokens.clear()
        access, secret = _random_token(), _random_token()
        now = self.clock()
        self._access_tokens[access] = _Grant(Token(access, secret, now))
        return {"oauth_token": access, "oauth_token_secret": secret}

    def _check_access(self, record: _Grant, renewing: bool = False) -> None:
        """Refuse an access token that E*TRADE's rules (token_state) say is expired, or idle
        (unless this is its renew); else record that it was used now."""
        now = self.clock()
        state = token_state(record.token, now)
        if state == EXPIRED:
            raise _Refusal(401, "token_expired")
        if state == IDLE and not renewing:
            # NOTE: E*TRADE does not document what an idle token gets; the
            # switch idle_problem chooses (README).
            raise _Refusal(401, self.idle_problem)
        record.token = record.token.used_at(now)

    def authorize(self, key: str, token: str, approve: bool) -> str | None:
        """Record the user's decision on the authorize page; return the verifier when approved."""
        with self._lock:
            record = self._request_tokens.get(token)
            if key != self.consumer_key or record is None or record.state != "pending":
                raise _Refusal(400, "token_rejected")
            if request_token_time_left(record.token, self.clock()) <= 0:
                raise _Refusal(400, "token_expired")
            if not approve:
                record.state = "denied"
                return None
            record.state = "approved"
            record.verifier = verifier = _random_verifier()
            return verifier

    def handle_oauth(
        self,
        method: str,
        path: str,
        url: str,
        authorization: str | None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> tuple[int, str]:
        """Answer an /oauth/* request (GET or POST): (status, body)."""
        with self._lock:
            if path == _OAUTH_PATHS["request_token"]:
                params, _ = self._authenticate(method, url, authorization, "consumer", body, content_type)
                fields = self._issue_request_token(params)
            elif path == _OAUTH_PATHS["access_token"]:
                params, record = self._authenticate(method, url, authorization, "request", body, content_type)
                fields = self._issue_access_token(record, params)
            elif path == _OAUTH_PATHS["renew_access_token"]:
                _, record = self._authenticate(method, url, authorization, "access", body, content_type)
                self._check_access(record, renewing=True)
                return 200, "Access Token has been renewed"
            elif path == _OAUTH_PATHS["revoke_access_token"]:
                params, _ = self._authenticate(method, url, authorization, "access", body, content_type)
                del self._access_tokens[params["oauth_token"]]
                return 200, "Revoked Access Token"
            else:
                raise _Refusal(404, "parameter_rejected")
        return 200, _form_encode(fields.items())

    def handle_api(
        self,
        method: str,
        path: str,
        url: str,
        authorization: str | None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> object:
        """Answer a /v1/... request with sample data (a dict; None for an empty collection),
        after the OAuth checks and the rate limit."""
        with self._lock:
            _, record = self._authenticate(method, url, authorization, "access", body, content_type)
            self._check_access(record)
            self._count_against_the_rate_limit(path)
        resource = path[:-5] if path.endswith(".json") else path
        if resource == "/v1/accounts/list":
            return {"AccountListResponse": {"Accounts": {"Account": _EMULATOR_ACCOUNTS}}}
        account = re.fullmatch(r"/v1/accounts/([^/]*)/(orders|transactions|balance|portfolio)", resource)
        if account:
            return _emulator_account_resource(_emulator_account(account.group(1)), account.group(2))
        if resource.startswith("/v1/market/lookup/"):
            search = unquote(resource[len("/v1/market/lookup/") :])
            return {"LookupResponse": {"Data": [{"symbol": search.upper()[:5], "description": search.upper(),
                                                 "type": "EQUITY"}]}}  # fmt: skip
        if resource.startswith("/v1/market/quote/"):
            symbols = [s for s in unquote(resource[len("/v1/market/quote/") :]).upper().split(",") if s]
            if not 1 <= len(symbols) <= 25:
                raise _Refusal(400, code=1019, message="Too many symbols requested; the limit is 25")
            return {"QuoteResponse": {"QuoteData": [_emulator_quote(s, self.clock()) for s in symbols]}}
        raise _Refusal(404, code=100, message="Resource not found")


def _emulator_account(account_id_key: str) -> dict[str, object]:
    """Return the emulated account an accountIdKey names, or refuse as E*TRADE does.

    REAL-ANSWERS (List Orders): 400 with code 100 "Account key does not belong
    to user", 400 with code 102 "Please enter valid account key".
    """
    for account in _EMULATOR_ACCOUNTS:
        if account["accountIdKey"] == account_id_key:
            return account
    if re.fullmatch(r"[A-Za-z0-9_-]{22}", account_id_key):
        raise _Refusal(400, code=100, message="Account key does not belong to user")
    raise _Refusal(400, code=102, message="Please enter valid account key")


def _emulator_account_resource(account: Mapping[str, object], what: str) -> object:
    """Return an emulated account's balance, portfolio, orders or transactions (sample data).

    The accounts have no orders and no transactions, and the IRA holds no
    positions: E*TRADE answers an empty collection with 204 and no body, so
    these are None.
    """
    if what == "balance":
        computed = {"cashAvailableForInvestment": 10000.0, "RealTimeValues": {"totalAccountValue": 25000.0}}
        return {
            "BalanceResponse": {
                "accountId": account["accountId"],
                "accountType": account["accountType"],
                "accountDescription": account["accountDesc"],
                "Computed": computed,
            }
        }
    if what == "portfolio" and account["accountMode"] != "IRA":
        position = {
            "symbolDescription": "GOOG",
            "quantity": 10,
            "Product": {"symbol": "GOOG", "securityType": "EQ"},
        }
        return {
            "PortfolioResponse": {
                "AccountPortfolio": [{"accountId": account["accountId"], "Position": [position]}]
            }
        }
    return None


# ---- Command line ----

#: The command line's exit statuses (README, "The command line"; also in --help).
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_LOGIN_NEEDED = 0, 1, 2, 3

_EXIT_HELP = """exit status: 0 success; 1 failure; 2 usage error; 3 a browser login is needed
(status: no token or an expired one; get and renew: no token, or the server says it
expired, was revoked or rejected; login --finish: the login expired), so that
`oauth1_etrade renew || notify-me` works from cron.
environment: ETRADE_CONSUMER_KEY, ETRADE_CONSUMER_SECRET, ETRADE_TOKEN_FILE,
ETRADE_API_BASE (e.g. the URL `serve` prints), ETRADE_SANDBOX=1."""


def _program_name() -> str:
    """Return the command as the user ran it, for the hints the command line prints.

    The installed command (oauth1-etrade or oauth1_etrade), "python3 FILE"
    for the file itself, "python3 -m oauth1_etrade" for the installed package.
    """
    import os

    typed = sys.argv[0] if sys.argv and sys.argv[0] else ""
    name = os.path.basename(typed)
    name = name[:-4] if name.lower().endswith(".exe") else name
    if name == "__main__.py":
        return "python3 -m oauth1_etrade"
    if name.endswith(".py") and name.startswith("oauth1"):
        return f"python3 {typed}"
    return name if name in ("oauth1-etrade", "oauth1_etrade") else "oauth1_etrade"


def _run(prog: str, command: str) -> str:
    """Return the hint to run ``command``, naming the program as the user ran it."""
    return f"run: {prog} {command}"


class _CliError(Exception):
    """An expected failure of a command: printed as one line; exit status ``status``."""

    def __init__(self, message: str, status: int = EXIT_FAILURE):
        super().__init__(message)
        self.status = status


# The advice the command line words as a command to run (the rest as the library does).
_CLI_ADVICE: Mapping[str, str] = MappingProxyType(
    {"log in": "login", "log in first": "login", "renew": "renew", "get a request token": "login"}
)


def _cli_words(error: BaseException, prog: str) -> str:
    """Return an error's message with its advice as the command to run, where there is one."""
    if isinstance(error, OAuthError) and error.advice in _CLI_ADVICE:
        return f"{error.summary}; {_run(prog, _CLI_ADVICE[str(error.advice)])}"
    return str(error)


def _terminal_safe(text: str) -> str:
    """Return text from a server or a file with its control characters shown as escapes.

    Only TAB and LF pass: ESC, BEL, CR, backspace, C1 controls and bidi
    overrides could retitle, clear or overwrite the user's terminal
    (CVE-2021-25743 in kubectl; CVE-2021-42574).
    """
    return re.sub(f"[{_UNSAFE_BUT_TAB_AND_LF}]", lambda m: f"\\u{ord(m.group()):04x}", text)


def _masked_secret(label: str, secret: str) -> str:
    """Return a stand-in for a secret in printed output: its name and length only."""
    return f"<{label}, {len(secret)} chars>" if secret else ""


def _hide_secrets(text: str) -> str:
    """Return a token response with the value of oauth_token_secret hidden."""
    return re.sub(r"(oauth_token_secret=)[^&\s]*", r"\1<hidden>", text)


def _pairs_from_args(items: Sequence[str] | None, flag: str) -> list[tuple[str, str]]:
    """Return k=v command-line items as pairs."""
    pairs = []
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise _CliError(f"{flag} takes name=value, not {item!r}")
        pairs.append((name, value))
    return pairs


def _secret_from_file(path: str) -> str:
    """Return the first line of a secret file readable by its owner only, or of standard input ("-")."""
    import os

    if path == "-":
        line = sys.stdin.readline().strip()
        if not line:
            raise _CliError("--consumer-secret-file -: standard input gave no secret")
        return line
    try:
        fd = _open_own_file(path, os.O_RDONLY, "secret file")
    except FileNotFoundError:
        raise _CliError(f"--consumer-secret-file: no file {path}") from None
    try:
        if os.name == "posix" and os.fstat(fd).st_mode & 0o077:
            raise _CliError(
                f"--consumer-secret-file: {path} is readable by other users; run: chmod 600 {path}"
            )
        data = os.read(fd, 65536)
    finally:
        os.close(fd)
    secret = data.decode("utf-8", errors="replace").partition("\n")[0].strip()
    if not secret:
        raise _CliError(f"--consumer-secret-file: {path} is empty")
    return secret


def _credentials(args: argparse.Namespace) -> tuple[str, str]:
    """Return the consumer key and secret: flags, a secret file or standard input, or the environment.

    CWE-214: a secret in argv is readable by every local user (/proc/PID/cmdline)
    and lands in shell history, so --consumer-secret works but warns, as
    `docker login --password` does.
    """
    import os
    import warnings

    key = getattr(args, "consumer_key", None) or os.environ.get("ETRADE_CONSUMER_KEY")
    secret = getattr(args, "consumer_secret", None)
    if secret:
        warnings.warn(
            "--consumer-secret on the command line is visible to other users and kept in shell history; "
            "use ETRADE_CONSUMER_SECRET or --consumer-secret-file",
            stacklevel=2,
        )
    secret_file = getattr(args, "consumer_secret_file", None)
    if not secret and secret_file:
        secret = _secret_from_file(secret_file)
    secret = secret or os.environ.get("ETRADE_CONSUMER_SECRET")
    if not key or not secret:
        raise _CliError(
            "no consumer key and secret: set ETRADE_CONSUMER_KEY and ETRADE_CONSUMER_SECRET "
            "(or pass --consumer-key and --consumer-secret-file)"
        )
    return key, secret


def _session(
    args: argparse.Namespace,
    *,
    trace: Callable[[str, str, str, Response], None] | None = None,
    credentials: tuple[str, str] | None = None,
) -> ETradeSession:
    """Return the session the command-line flags describe, with the token store."""
    import os

    key, secret = credentials or _credentials(args)
    api_base = getattr(args, "api_base", None) or os.environ.get("ETRADE_API_BASE") or None
    sandbox = bool(getattr(args, "sandbox", False)) or os.environ.get("ETRADE_SANDBOX", "") in ("1", "true")
    authorize_base = getattr(args, "authorize_base", None)
    if api_base and not authorize_base:
        # --api-base points at `serve`, whose authorize page lives beside the API.
        authorize_base = api_base.rstrip("/") + "/e/t/etws/authorize"
    return ETradeSession(
        key,
        secret,
        sandbox=sandbox,
        api_base=api_base,
        authorize_base=authorize_base,
        store=TokenStore(getattr(args, "token_file", None)),
        trace=trace,
    )


def _store_path(session: ETradeSession) -> str:
    return session.store.path if session.store is not None else "(none)"


def _duration(seconds: float) -> str:
    """Return seconds as text like "2 h 05 min" or "45 s"."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _cmd_selftest(args: argparse.Namespace) -> int:
    return _selftest()


def _environment(session: ETradeSession) -> str:
    """Return which E*TRADE the session talks to: production, sandbox, or the custom host."""
    if session.environment == "custom":
        return f"custom API host {session.api_base} (not E*TRADE's production or sandbox)"
    return f"{session.environment} ({session.api_base})"


def _pending_logins(session: ETradeSession) -> TokenStore:
    """Return the store of request tokens that `login --start` saved, beside the token file.

    A TokenStore too: mode 0600, atomic, per consumer key and API host; the
    entry's issued_at says when its 5 minutes began.
    """
    import os

    folder = os.path.dirname(os.path.abspath(_store_path(session)))
    return TokenStore(os.path.join(folder, "pending-login.json"))


_PASTE_PROMPT = "Paste the verifier code (or the whole URL you landed on): "


def _answer_problem(query: list[Param], request_token: str) -> str | None:
    """Return why callback query pairs are not this login's answer, or None.

    The answer needs a non-empty oauth_verifier; an oauth_token, when there is
    one, must be the pending request token (E*TRADE's documented callback
    carries only oauth_verifier).
    """
    verifier = next((v for n, v in query if n == "oauth_verifier"), None)
    if not isinstance(verifier, str) or not verifier:
        return "no oauth_verifier"
    token = next((v for n, v in query if n == "oauth_token"), None)
    if token is not None and token != request_token:
        return "the oauth_token of another login"
    return None


def _pasted_problem(text: str, request_token: str) -> str | None:
    """Return why a pasted answer cannot be this login's verifier, or None."""
    if not text:
        return "Nothing was pasted"
    query = _callback_query(text)
    if query is None:
        return None  # a bare verifier code
    problem = _answer_problem(query, request_token)
    return f"That URL has {problem}" if problem else None


def _callback_problem(path: str, fetch_dest: str | None, request_token: str) -> str | None:
    """Return why a request to the login listener is not E*TRADE's redirect, or None."""
    if fetch_dest is not None and fetch_dest != "document":
        return f"Not a page navigation (Sec-Fetch-Dest: {_one_line(fetch_dest, 40)})"
    problem = _answer_problem(_callback_query(path) or [], request_token)
    return f"This request has {problem}" if problem else None


def _callback_listener(
    port: int, request_token: str, answers: queue.Queue[tuple[str, str]]
) -> http.server.ThreadingHTTPServer:
    """Serve 127.0.0.1:port until shut down; put each valid redirect's URL in ``answers``.

    Connections are served on threads with a 10-second socket timeout, so an
    idle one (browsers pre-connect) stalls nothing. Ignored, with a 400 page,
    while the listener waits on: requests without a non-empty oauth_verifier,
    with an oauth_token that is not the pending request token (one without
    oauth_token is accepted: E*TRADE's documented callback carries only
    oauth_verifier), and requests the browser marks as not a top-level
    navigation (Sec-Fetch-Dest present and not "document": an <img> on
    another page).
    """
    import http.server

    class Callback(http.server.BaseHTTPRequestHandler):
        timeout = 10

        def do_GET(self) -> None:  # noqa: N802
            problem = _callback_problem(self.path, self.headers.get("Sec-Fetch-Dest"), request_token)
            if problem:
                self._page(400, "Waiting for E*TRADE", f"{problem}. This page keeps waiting for E*TRADE.")
                return
            self._page(
                200, "Authorization received", "oauth1_etrade has the verifier; you can close this tab."
            )
            answers.put(("callback", f"http://127.0.0.1:{port}{self.path}"))

        def _page(self, status: int, title: str, text: str) -> None:
            page = _RESULT_PAGE.format(title=f"oauth1_etrade login: {title}", text=text).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            for name, value in _page_headers(None).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            _logger_debug("login listener: " + format, *args)

    return _serve_in_background(port, Callback, "login listener")


def _read_pastes(answers: queue.Queue[tuple[str, str]]) -> None:
    """Put each line typed at the prompt in ``answers``; ("eof", "") when input ends."""
    for line in sys.stdin:
        answers.put(("paste", line.strip()))
    answers.put(("eof", ""))


def _first_accepted_answer(
    session: ETradeSession, answers: queue.Queue[tuple[str, str]], *, listening: bool, prog: str
) -> None:
    """Exchange answers for an access token until one is accepted, or the request token expires."""
    import queue

    request_token = session.request_token
    assert request_token is not None  # noqa: S101
    deadline = time.monotonic() + request_token_time_left(request_token, session.now())
    refused_pastes = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _CliError(
                f"no verifier arrived within the request token's 5 minutes; start again: {prog} login",
                EXIT_LOGIN_NEEDED,
            )
        try:
            source, text = answers.get(timeout=left)
        except queue.Empty:
            continue
        if source == "eof":
            if not listening:
                raise _CliError(
                    "no verifier given (input ended); from scripts use login --start and --finish"
                )
            continue
        problem = _pasted_problem(text, request_token.token) if source == "paste" else None
        if problem:
            print(f"{problem}.\n{_PASTE_PROMPT}", end="", flush=True)
            continue
        try:
            session.get_access_token(text)
            return
        except VerifierInvalidError as refused:
            if source == "paste":
                refused_pastes += 1
                if refused_pastes > 1:
                    raise
            print(
                f"\nThe server refused that verifier ({refused.problem}).\n{_PASTE_PROMPT}",
                end="",
                flush=True,
            )
        finally:
            if source == "callback":
                print("\nE*TRADE redirected to this machine with the verifier.", flush=True)


def _login_interactive(session: ETradeSession, port: int | None, prog: str) -> None:
    """Take the verifier from the paste prompt and, with ``port``, from E*TRADE's redirect too.

    Both listen at once and the first valid answer wins, while the request
    token lives (5 minutes). A bad paste re-prompts with its reason; a
    verifier the server refuses is reported and re-prompted once more.
    """
    import queue
    import threading

    request_token = session.request_token
    assert request_token is not None  # noqa: S101 (set by get_request_token)
    answers: queue.Queue[tuple[str, str]] = queue.Queue()
    listener = None if port is None else _callback_listener(port, request_token.token, answers)
    threading.Thread(target=_read_pastes, args=(answers,), name="oauth1_etrade-paste", daemon=True).start()
    try:
        if listener is not None:
            print(f"Waiting for E*TRADE to redirect to http://127.0.0.1:{port}/ ...", flush=True)
        print(_PASTE_PROMPT, end="", flush=True)
        _first_accepted_answer(session, answers, listening=listener is not None, prog=prog)
    finally:
        if listener is not None:
            listener.shutdown()
            listener.server_close()


def _login_finish(session: ETradeSession, answer: str, prog: str) -> int:
    """Finish the login that `login --start` began: exchange the verifier for an access token."""
    pending = _pending_logins(session)
    request_token = pending.load(session.consumer_key, session.api_base)
    if request_token is None:
        raise _CliError(f"no login was started for this key and host: {_run(prog, 'login --start')}", 3)
    if request_token_time_left(request_token, session.now()) <= 0:
        pending.delete(session.consumer_key, session.api_base)
        raise _CliError(
            "the login started with --start has expired (E*TRADE request tokens live 5 minutes); "
            f"start again: {prog} login --start",
            EXIT_LOGIN_NEEDED,
        )
    problem = _pasted_problem(answer, request_token.token)
    if problem:
        raise _CliError(f"{problem}; give the verifier code or the whole URL you landed on")
    session.request_token = request_token
    session.get_access_token(answer)
    pending.delete(session.consumer_key, session.api_base)
    print(
        f"Logged in. The access token is saved in {_store_path(session)}; it expires at midnight US Eastern."
    )
    return EXIT_OK


def _cmd_login(args: argparse.Namespace) -> int:
    session = _session(args)
    finish = getattr(args, "finish", None)
    if finish is not None:
        return _login_finish(session, finish, args.prog)
    session.get_request_token()
    url = session.authorize_url()
    if getattr(args, "start", False):
        request_token = session.request_token
        assert request_token is not None  # noqa: S101 (set by get_request_token)
        _pending_logins(session).save(session.consumer_key, session.api_base, request_token)
        print("Open this page, log in to E*TRADE and approve the application:")
        print(f"  {url}")
        print(f"then, within 5 minutes: {args.prog} login --finish VERIFIER_OR_URL")
        return EXIT_OK
    print("Open this page, log in to E*TRADE and approve the application:", flush=True)
    print(f"  {url}", flush=True)
    if not getattr(args, "no_browser", False):
        import webbrowser

        webbrowser.open(url)
    _login_interactive(session, getattr(args, "callback_port", None), args.prog)
    print(
        f"Logged in. The access token is saved in {_store_path(session)}; it expires at midnight US Eastern."
    )
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    session = _session(args)
    print(f"environment:   {_environment(session)}")
    print(f"consumer key:  {_mask(session.consumer_key)}")
    print(f"token file:    {_store_path(session)}")
    status = session.token_status()
    if not status["access_token"]:
        print(f"access token:  none ({_run(args.prog, 'login')})")
        return EXIT_LOGIN_NEEDED
    print(f"token age:     {_duration(float(status['age']))}")
    print(f"idle for:      {_duration(float(status['idle']))}")
    if status["expired"]:
        print(f"expires:       expired at midnight US Eastern ({_run(args.prog, 'login')})")
        return EXIT_LOGIN_NEEDED
    print(f"expires in:    {_duration(float(status['expires_in']))} (midnight US Eastern)")
    due = f"yes (idle 2 hours or more; {_run(args.prog, 'renew')})" if status["renew_due"] else "no"
    print(f"renew due:     {due}")
    return EXIT_OK


def _cmd_renew(args: argparse.Namespace) -> int:
    _session(args).renew_access_token()
    print("The access token is renewed.")
    return EXIT_OK


def _cmd_revoke(args: argparse.Namespace) -> int:
    _session(args).revoke_access_token()
    print("The access token is revoked and removed from the token file.")
    return 0


def _sign_options(args: argparse.Namespace) -> tuple[ETradeSession, str, str, dict[str, Any]]:
    """Return (session, method, url, sign_request options) for sign and explain."""
    key, secret = _credentials(args)
    session = _session(args, credentials=(key, secret))
    method, url = str(getattr(args, "method")).upper(), str(getattr(args, "url"))  # noqa: B009
    if url.startswith("/"):
        url = session.api_base + url
    data = _pairs_from_args(getattr(args, "data", None), "--data")
    token = session.access_token
    options: dict[str, Any] = {
        "consumer_key": session.consumer_key,
        "consumer_secret": secret,
        "token": token.token if token else None,
        "token_secret": token.secret if token else "",
        "body": data or None,
        "nonce": getattr(args, "nonce", None),
        "timestamp": getattr(args, "timestamp", None),
    }
    return session, method, url, options


def _cmd_sign(args: argparse.Namespace) -> int:
    _, method, url, options = _sign_options(args)
    print("Authorization: " + sign_request(method, url, **options))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    _, method, url, options = _sign_options(args)
    header = sign_request(method, url, **options)
    sent = parse_authorization_header(header)
    body = list(options["body"] or [])
    query = _parse_form(urlsplit(url).query)
    protocol = [(n, v) for n, v in sent.items() if n != "oauth_signature"]
    print(f"{method} {url}\n")
    print("§3.4.1.3.1 parameters from the query, the protocol and a form body (raw -> §3.6 encoded):")
    for source, pairs in (("query", query), ("oauth", protocol), ("body", body)):
        for name, value in pairs:
            shown = repr(value) if isinstance(value, bytes) else value
            print(f"  {source:<5}  {name!s} = {shown!s}")
            print(f"         -> {percent_encode(name)}={percent_encode(value)}")
    normalized = normalize_parameters(query + protocol + body)
    print("\n§3.4.1.3.2 sorted by encoded name, then value, joined with '&':")
    for pair in normalized.split("&"):
        print(f"  {pair}")
    print(f"\n§3.4.1.2 base string URI:\n  {base_string_uri(url)}")
    base = signature_base_string(method, url, protocol + body)
    print(f"\n§3.4.1.1 signature base string (METHOD & encoded URI & encoded parameters):\n  {base}")
    secret, token_secret = str(options["consumer_secret"]), str(options["token_secret"])
    key = f"{_masked_secret('consumer secret', secret)}&{_masked_secret('token secret', token_secret)}"
    print(f"\n§3.4.2 signing key (encoded consumer secret & encoded token secret, masked here):\n  {key}")
    print(f"\n§3.4.2 signature, HMAC-SHA1 in base64:\n  {sent['oauth_signature']}")
    print(f"\n§3.5.1 Authorization header:\n  {header}")
    return 0


def _cmd_get(args: argparse.Namespace) -> int:
    import json

    session = _session(args)
    params = _pairs_from_args(getattr(args, "param", None), "--param")
    response = session.get(str(getattr(args, "path_or_url")), params=params or None)  # noqa: B009
    if not response.body.strip():
        return EXIT_OK  # 204 (E*TRADE's empty collection) or an empty 2xx: nothing to print
    try:
        text = json.dumps(response.json(), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply for it
        text = response.text
    print(_terminal_safe(text))
    return EXIT_OK


def _serve_credentials(args: argparse.Namespace) -> tuple[str, str, str]:
    """Return (consumer key, consumer secret, where they are kept) for `serve`.

    From the flags when given; else kept in emulator-credentials.json beside
    the token file (a TokenStore entry: mode 0600, atomic), made on first use,
    so a restarted emulator accepts the credentials exported before.
    """
    import os

    key = getattr(args, "consumer_key", None) or "oauth1-etrade-emulator"
    given = getattr(args, "consumer_secret", None)
    if given:
        return key, given, "given on the command line"
    folder = os.path.dirname(os.path.abspath(TokenStore(getattr(args, "token_file", None)).path))
    kept = TokenStore(os.path.join(folder, "emulator-credentials.json"))
    entry = kept.load(key, "serve")
    if entry is None:
        entry = Token(key, _random_token(), time.time())
        kept.save(key, "serve", entry)
    return key, entry.secret, kept.path


def _cmd_serve(args: argparse.Namespace) -> int:
    key, secret, kept = _serve_credentials(args)
    emulator = Emulator(
        consumer_key=key,
        consumer_secret=secret,
        callback_url=getattr(args, "callback_url", None),
        port=int(getattr(args, "port", 0)),
        idle_problem=str(getattr(args, "idle_problem", "token_rejected")),
        second_login_revokes=bool(getattr(args, "second_login_revokes", False)),
        rate_limits=None if getattr(args, "no_rate_limits", False) else ETRADE_RATE_LIMITS,
    )
    with emulator:
        print(f"E*TRADE emulator at {emulator.base_url} (offline; 127.0.0.1 only)", flush=True)
        print(f"  authorize page:  {emulator.authorize_base}")
        print(f"  consumer key:    {emulator.consumer_key}")
        print(f"  consumer secret: {emulator.consumer_secret}   (the emulator's own; kept in {kept})")
        print("In another terminal, paste these three lines, then run the commands below them:")
        print(f"  export ETRADE_CONSUMER_KEY='{emulator.consumer_key}'")
        print(f"  export ETRADE_CONSUMER_SECRET='{emulator.consumer_secret}'")
        print(f"  export ETRADE_API_BASE='{emulator.base_url}'")
        print(f"  {args.prog} login --no-browser")
        print(f"  {args.prog} get /v1/accounts/list.json")
        print("Press Ctrl-C to stop.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstopped")
    return EXIT_OK


def _demo_trace(exchanges: list[str]) -> Callable[[str, str, str, Response], None]:
    """Return a session trace that prints each exchange as the demo shows it."""

    def show(method: str, url: str, authorization: str, response: Response) -> None:
        params = list(parse_authorization_header(authorization).items())
        token_part = "<token secret>" if any(name == "oauth_token" for name, _ in params) else ""
        body = " ".join(_hide_secrets(response.text).split())
        print(f"   {method} {url}")
        print(f"   base string:   {signature_base_string(method, url, params)}")
        print(f"   signing key:   <consumer secret>&{token_part}   (RFC 5849 §3.4.2; secrets masked)")
        print(f"   Authorization: {authorization}")
        print(f"   -> {response.status} {body[:100]}{' ...' if len(body) > 100 else ''}")
        exchanges.append(f"{method} {urlsplit(url).path} -> {response.status}")

    return show


def _demo_approve(emulator: Emulator, url: str) -> str:
    """Open the emulated authorize page, press Approve like a user, return the verifier shown."""
    import html
    import urllib.request

    # Both URLs are the in-process emulator's, on 127.0.0.1.
    page = urllib.request.urlopen(url, timeout=10).read().decode()  # noqa: S310
    fields = dict(re.findall(r'name="(key|token)" value="([^"]*)"', page))
    form = _form_encode([*((k, html.unescape(v)) for k, v in fields.items()), ("decision", "approve")])
    with urllib.request.urlopen(emulator.authorize_base, data=form.encode(), timeout=10) as answer:  # noqa: S310
        verifier = re.search(r'id="verifier">([A-Z0-9]+)<', answer.read().decode())
    if verifier is None:
        raise _CliError("the emulator's authorize page did not show a verifier")
    return verifier.group(1)


def _demo_refusal(emulator: Emulator, clock: ManualClock, token: Token, trace: Callable[..., None]) -> None:
    """Show that the emulator refuses a revoked token."""
    stale = ETradeSession(
        emulator.consumer_key, emulator.consumer_secret, token=token.token, token_secret=token.secret,
        api_base=emulator.base_url, clock=clock, trace=trace, auto_renew=False,
    )  # fmt: skip
    try:
        stale.get("/v1/accounts/list.json")
    except TokenRejectedError as refused:
        print(f"   {type(refused).__name__} ({refused.problem}): the revoked token no longer works")
    else:
        raise _CliError("the emulator accepted a revoked token")


def _demo() -> int:
    """Run the whole E*TRADE flow against the in-process emulator, printing each step."""
    started = time.monotonic()
    clock = ManualClock()
    exchanges: list[str] = []
    trace = _demo_trace(exchanges)
    with Emulator(consumer_key="oauth1-etrade-demo", clock=clock) as emulator:
        print("oauth1_etrade demo: the E*TRADE OAuth 1.0a flow against the offline emulator")
        print(
            f"emulator at {emulator.base_url}, consumer key {emulator.consumer_key!r}; secrets are masked\n"
        )
        session = ETradeSession(
            emulator.consumer_key, emulator.consumer_secret, api_base=emulator.base_url,
            authorize_base=emulator.authorize_base, clock=clock, trace=trace,
        )  # fmt: skip
        print("1. Get a request token (E*TRADE: Get Request Token; oauth_callback=oob)")
        session.get_request_token()
        print("\n2. The user authorizes the application (E*TRADE: Authorize Application)")
        url = session.authorize_url()
        print(f"   open {url}")
        verifier = _demo_approve(emulator, url)
        print(f"   the user presses Approve; the page shows the verifier {verifier}")
        print("\n3. Exchange it for an access token (E*TRADE: Get Access Token)")
        session.get_access_token(verifier)
        print("\n4. A signed API call: list accounts")
        accounts = session.get("/v1/accounts/list.json").json()
        print(f"   {len(accounts['AccountListResponse']['Accounts']['Account'])} accounts")
        print("\n5. Query values that break naive signers (spaces, ',', ':')")
        session.get("/v1/market/quote/GOOG,AAPL.json", params={"detailFlag": "ALL", "note": "a b,c:d"})
        print("\n6. Two idle hours pass (the clock jumps): E*TRADE would inactivate the token,")
        print("   so the session renews it before the next call (E*TRADE: Renew Access Token)")
        clock.advance(2 * 60 * 60)  # E*TRADE's two idle hours
        session.get("/v1/accounts/list.json")
        print("\n7. Revoke the access token (E*TRADE: Revoke Access Token)")
        revoked = session.access_token
        session.revoke_access_token()
        if revoked is not None:
            print("\n8. The revoked token is refused")
            _demo_refusal(emulator, clock, revoked, trace)
    print(f"\nSummary: {len(exchanges)} signed requests, every signature checked by the emulator:")
    for line in exchanges:
        print(f"  {line}")
    print(f"demo finished in {time.monotonic() - started:.2f} s: request token, authorize, access token,")
    print("API calls, automatic renew after 2 idle hours, revoke, refusal. No network, no credentials.")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    return _demo()


_COMMANDS: Mapping[str, tuple[Callable[[argparse.Namespace], int], str]] = MappingProxyType(
    {
        "demo": (_cmd_demo, "run the whole E*TRADE flow against the offline emulator, step by step"),
        "login": (_cmd_login, "log in: request token, authorize page, verifier, access token (saved)"),
        "status": (_cmd_status, "show the saved access token's age, idle time and time left"),
        "renew": (_cmd_renew, "renew the saved access token (after 2 idle hours)"),
        "revoke": (_cmd_revoke, "revoke the saved access token and remove it"),
        "get": (_cmd_get, "send a signed GET and print the answer (JSON pretty-printed)"),
        "sign": (_cmd_sign, "print the Authorization header for a request (for curl -H)"),
        "explain": (_cmd_explain, "show every RFC 5849 step of signing a request"),
        "serve": (_cmd_serve, "run the offline E*TRADE emulator on 127.0.0.1 until Ctrl-C"),
        "selftest": (_cmd_selftest, "check RFC 5849 and E*TRADE known answers with this file alone"),
    }
)


def _parser() -> argparse.ArgumentParser:
    """Return the argparse parser of the command line."""
    import argparse  # imported here: `import oauth1_etrade` stays light

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            # One line, as every other failure of the command line.
            self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")

    parser = Parser(
        prog="oauth1_etrade",
        description="OAuth 1.0a client for the E*TRADE API. Credentials come from "
        "ETRADE_CONSUMER_KEY and ETRADE_CONSUMER_SECRET (or --consumer-key / --consumer-secret); "
        "tokens are saved in ETRADE_TOKEN_FILE or the user's config directory.",
        epilog=_EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"oauth1_etrade {__version__}")
    # The options each command uses, and only those (`serve --help` lists what serve takes).
    verbose = Parser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", help="log requests (redacted) to stderr")
    credentials = Parser(add_help=False)
    credentials.add_argument("--consumer-key", metavar="KEY", help="default: $ETRADE_CONSUMER_KEY")
    credentials.add_argument(
        "--consumer-secret-file",
        metavar="PATH",
        help="read the secret from this file (mode 0600), or from standard input with -",
    )
    credentials.add_argument(
        "--consumer-secret",
        metavar="SECRET",
        help="default: $ETRADE_CONSUMER_SECRET (on the command line it is visible to others: warned)",
    )
    credentials.add_argument(
        "--token-file", metavar="PATH", help="default: $ETRADE_TOKEN_FILE or the config directory"
    )
    hosts = Parser(add_help=False)
    hosts.add_argument(
        "--sandbox", action="store_true", help="use E*TRADE's sandbox hosts ($ETRADE_SANDBOX=1)"
    )
    hosts.add_argument(
        "--api-base", metavar="URL", help="API host, e.g. the URL `serve` prints ($ETRADE_API_BASE)"
    )
    hosts.add_argument("--authorize-base", metavar="URL", help="authorize page (default: E*TRADE's)")
    client = [credentials, hosts, verbose]
    parents = {"demo": [verbose], "selftest": [], "serve": [verbose]}
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    sub = {name: commands.add_parser(name, help=text, description=text, parents=parents.get(name, client),
                                     epilog=_EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
           for name, (_, text) in _COMMANDS.items()}  # fmt: skip
    sub["login"].add_argument(
        "--no-browser", action="store_true", help="print the URL, do not open a browser"
    )
    sub["login"].add_argument(
        "--callback-port",
        type=int,
        metavar="N",
        help="also take the verifier from E*TRADE's redirect to 127.0.0.1:N (the paste prompt stays)",
    )
    steps = sub["login"].add_mutually_exclusive_group()
    steps.add_argument(
        "--start", action="store_true", help="print the authorize URL, save the request token, and exit"
    )
    steps.add_argument(
        "--finish", metavar="VERIFIER_OR_URL", help="finish the login --start began (within 5 minutes)"
    )
    for name in ("sign", "explain"):
        sub[name].add_argument("method", help="HTTP method, e.g. GET")
        sub[name].add_argument("url", help="full URL, or a path under the API host")
        sub[name].add_argument("--data", action="append", metavar="K=V", help="form body field (repeatable)")
        sub[name].add_argument("--nonce", help="fixed nonce (default: a fresh one)")
        sub[name].add_argument("--timestamp", help="fixed timestamp (default: now)")
    sub["get"].add_argument("path_or_url", help="e.g. /v1/accounts/list.json")
    sub["get"].add_argument("--param", action="append", metavar="K=V", help="query parameter (repeatable)")
    sub["serve"].add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    sub["serve"].add_argument(
        "--consumer-key", metavar="KEY", help="the key it accepts (default: oauth1-etrade-emulator)"
    )
    sub["serve"].add_argument(
        "--consumer-secret",
        metavar="SECRET",
        help="the secret it accepts (default: one made on first use and kept beside the token file)",
    )
    sub["serve"].add_argument(
        "--token-file", metavar="PATH", help="its folder keeps the emulator's secret (default: as for login)"
    )
    sub["serve"].add_argument(
        "--callback-url", metavar="URL", help="act as if this callback URL were registered"
    )
    sub["serve"].add_argument(
        "--idle-problem",
        choices=Emulator.IDLE_PROBLEMS,
        default="token_rejected",
        help="what a token idle for 2 hours gets (E*TRADE does not document it; default: token_rejected)",
    )
    sub["serve"].add_argument(
        "--second-login-revokes",
        action="store_true",
        help="a new login revokes the older access tokens (not documented; default: they stay)",
    )
    sub["serve"].add_argument(
        "--no-rate-limits", action="store_true", help="do not enforce E*TRADE's published rate limits"
    )
    return parser


class _verbose_logging:
    """Context manager: with ``on``, the oauth1_etrade logger writes DEBUG lines to stderr."""

    def __init__(self, on: bool):
        self.on = on
        self._undo: Callable[[], None] | None = None

    def __enter__(self) -> None:
        if not self.on:
            return
        import logging

        logger = logging.getLogger("oauth1_etrade")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)

        def undo() -> None:
            logger.removeHandler(handler)
            logger.setLevel(level)

        self._undo = undo

    def __exit__(self, *exc: object) -> None:
        if self._undo is not None:
            self._undo()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Expected failures print one line to stderr, never a traceback, and
    return 1, or 3 when only a browser login helps (EXIT_LOGIN_NEEDED).
    """
    import warnings

    parser = _parser()
    args = parser.parse_args(argv)
    handler, _ = _COMMANDS[args.command]
    args.prog = _program_name()
    where = f"oauth1_etrade {args.command}"
    with _verbose_logging(bool(getattr(args, "verbose", False))), warnings.catch_warnings():
        warnings.showwarning = lambda message, *rest: print(
            f"{where}: warning: {_terminal_safe(str(message))}", file=sys.stderr
        )
        try:
            return handler(args)
        except LoginRequiredError as exc:
            print(f"{where}: {_terminal_safe(_cli_words(exc, args.prog))}", file=sys.stderr)
            return EXIT_LOGIN_NEEDED
        except _CliError as exc:
            print(f"{where}: {_terminal_safe(str(exc))}", file=sys.stderr)
            return exc.status
        except (OAuthError, ValueError, OSError) as exc:  # not TypeError: that would be a bug here
            print(f"{where}: {_terminal_safe(_cli_words(exc, args.prog))}", file=sys.stderr)
            return EXIT_FAILURE
        except KeyboardInterrupt:
            print(f"{where}: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())

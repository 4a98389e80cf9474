"""Mutation score of the RFC 5849 core, with mutmut (a development tool, never a dependency).

    python -m pip install ".[test]" mutmut
    python tools/mutation_score.py            # mutate and test the core, then print the score
    python tools/mutation_score.py --survivors  # rerun only the last run's survivors (after new tests)
    python tools/mutation_score.py --report   # print the score of the last run only

The core is the sans-IO part of oauth1_etrade.py: encoding, base string,
signature methods, header build and parse, sign and verify. mutmut (configured
in pyproject.toml) changes one thing at a time in those functions and runs the
tests that reach it; a mutant the tests notice is killed. Timeouts count as
killed (the tests noticed, by hanging); survivors are listed for review.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys

CORE_FUNCTIONS = [
    "_require_str", "_has_controls", "_reject_controls", "_require_texts", "_reject_encoded_controls",
    "percent_encode", "_percent_encode_each", "_form_decode", "_parse_form", "base_string_uri",
    "normalize_parameters", "_is_form", "_body_parameters", "_field_pairs", "signature_base_string",
    "_hmac", "_hmac_sha1", "_hmac_sha256", "_hmac_sha512", "_plaintext", "_signature_function", "signature",
    "_quote_realm", "authorization_header", "_decode_header_text", "_auth_param_problem",
    "parse_authorization_header", "make_nonce", "make_timestamp", "sign_request", "verify_request",
]  # fmt: skip

# mutmut names a mutant module.x_<function>__mutmut_<n>
PATTERNS = [f"oauth1_etrade.x_{name}__mutmut_*" for name in CORE_FUNCTIONS]
NAME_RE = re.compile(r"^\s*oauth1_etrade\.(?P<name>x_(?P<function>.+?)__mutmut_\d+): (?P<status>.+)$")


def results() -> str:
    """Return `mutmut results --all` output: one "name: status" line per mutant."""
    return subprocess.run(
        ["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=False
    ).stdout


def main() -> int:
    if "--survivors" in sys.argv:
        survivors = [
            m["name"] for m in map(NAME_RE.match, results().splitlines()) if m and m["status"] == "survived"
        ]
        subprocess.run(["mutmut", "run", *[f"oauth1_etrade.{name}" for name in survivors]], check=False)
    elif "--report" not in sys.argv:
        subprocess.run(["mutmut", "run", *PATTERNS], check=False)
    out = results()
    by_status: collections.Counter[str] = collections.Counter()
    survivors = []
    for line in out.splitlines():
        match = NAME_RE.match(line)
        if not match or match["function"] not in CORE_FUNCTIONS:
            continue
        status = match["status"].strip()
        by_status[status] += 1
        if status not in ("killed", "timeout"):
            survivors.append(line.strip())
    total = sum(by_status.values())
    if not total:
        print("no results for the core; run without --report first")
        return 1
    detected = by_status["killed"] + by_status["timeout"]
    for line in survivors:
        print(line)
    print(f"mutants of the core: {total}; " + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())))
    print(f"mutation score: {detected}/{total} = {100 * detected / total:.1f} % killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

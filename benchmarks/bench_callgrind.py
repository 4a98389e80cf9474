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
(quote, sort, join, HMAC, base64); the HMAC-SHA1 + base64 floor.

Target (issue 13): sign_request <= 0.20x the naive signer.
"""

from __future__ import annotations

import argparse
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


def signers() -> dict:
    import bench_sign  # the signers and credentials of the wall-clock benchmark

    return {
        "oauth1_etrade": lambda: bench_sign.ours("GET", URL),
        "naive": lambda: bench_sign.naive_sign("GET", URL),
        "HMAC+base64 floor": lambda: bench_sign.floor_for("GET", URL),
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
    done = subprocess.run(command, capture_output=True, text=True, check=True)
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

    headers = {name: sign() for name, sign in signers().items() if name != "HMAC+base64 floor"}
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

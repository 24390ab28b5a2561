#!/usr/bin/env python3
"""CPU per message of compose + DKIM sign, the part of a send that is ours and load-proof.

The end-to-end ``scripts/bench.py`` shares two cores with five sinks and a DNS server, so its
msg/s moves with whatever else the machine runs. This measures only the per-message work a
worker does between claiming a delivery and handing bytes to SMTP (render, MIME, QP, DKIM
canonicalisation, body hash, RSA-2048 signature) in CPU time (``time.process_time``), taking
the minimum of several repeats, which a busy machine disturbs far less. The bundled newsletter
template, personalised per recipient as in ``scripts/bench.py`` (name, city, address, token).

Run it against any checkout to compare code, in the same minute on the same machine::

  python scripts/bench_compose.py                      # this checkout
  PYTHONPATH=/tmp/before python scripts/bench_compose.py   # another worktree
  python scripts/bench_compose.py --profile 20         # top 20 of a cProfile of compose+sign

It also verifies a sample of the signed messages with dkimpy (an independent verifier), so a
faster path that breaks signatures cannot pass unnoticed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import dkim  # noqa: E402

import bulkmail  # noqa: E402
from bulkmail.compose.mime import Composer, ComposeSettings  # noqa: E402
from bulkmail.compose.render import CampaignInfo, Recipient  # noqa: E402
from bulkmail.signing.dkim import DkimSigner, sign_all  # noqa: E402
from bulkmail.signing.keys import dns_txt_value, generate_private_key, load_private_key  # noqa: E402

CAMPAIGN = CampaignInfo(
    id=3, name="Workshop Notes", subject="Hello {{ subscriber.name }}",
    from_header="Bench News <news@bench.test>", list_id=1, list_name="bench",
    template="newsletter",
)  # fmt: skip
SETTINGS = ComposeSettings(
    secret=b"bench-secret-0123456789abcdef", unsubscribe_url="https://bench.test/unsubscribe",
    unsubscribe_mailto="unsubscribe@bench.test", return_path_domain="bounces.bench.test",
    message_id_domain="bench.test",
)  # fmt: skip


def people(count: int) -> list[Recipient]:
    cities = ["Oslo", "Lima", "Kyoto"]
    return [
        Recipient(i + 1, f"user{i}@d{i % 5}.bench.test", f"Reader {i}", {"city": cities[i % 3]})
        for i in range(count)
    ]


def signed_builder(composer: Composer, signers: list[DkimSigner]) -> Callable[[Recipient], bytes]:
    """compose + sign as the pipeline does it in this checkout (old or new API)."""
    from bulkmail.delivery import pipeline

    if hasattr(pipeline, "sign_composed"):  # the per-campaign body-hash path
        sign_composed = pipeline.sign_composed
        return lambda r: sign_composed(signers, composer.compose(r))
    return lambda r: sign_all(signers, composer.compose(r).data)


def cpu_per_message(
    build: Callable[[Recipient], object], rs: list[Recipient], repeats: int
) -> float:
    """Minimum over ``repeats`` of CPU milliseconds per message."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for r in rs:
            build(r)
        best = min(best, time.process_time() - start)
    return best * 1000 / len(rs)


def verify_sample(messages: list[bytes], txt: bytes) -> int:
    """How many of ``messages`` dkimpy verifies against the published key record."""

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return txt if name == b"s1._domainkey.bench.test." else b""

    return sum(bool(dkim.verify(m, dnsfunc=dnsfunc)) for m in messages)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="messages per repeat (default 1000)")
    ap.add_argument("--repeats", type=int, default=7, help="repeats; the minimum counts")
    ap.add_argument("--verify", type=int, default=50, help="messages verified with dkimpy")
    ap.add_argument("--profile", type=int, default=0, help="print the top N of a cProfile")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()

    pem = generate_private_key("rsa", 2048)
    signers = [DkimSigner(pem, "bench.test", "s1")]
    txt = dns_txt_value(load_private_key(pem)).encode("ascii")
    composer = Composer(CAMPAIGN, SETTINGS)
    rs = people(args.count)
    build = signed_builder(composer, signers)
    for r in rs[:50]:  # warm caches the way a long send would
        build(r)
    sign_only = [composer.compose(r).data for r in rs]
    result = {
        "code": os.path.dirname(os.path.dirname(os.path.abspath(bulkmail.__file__))),
        "count": args.count,
        "repeats": args.repeats,
        "message_bytes": len(sign_only[0]),
        "compose_ms": cpu_per_message(composer.compose, rs, args.repeats),
        "sign_bytes_ms": cpu_per_message(
            lambda m: sign_all(signers, m),
            sign_only,
            args.repeats,  # type: ignore[arg-type]
        ),
        "compose_sign_ms": cpu_per_message(build, rs, args.repeats),
    }
    sample = [build(r) for r in rs[: args.verify]]
    result["verified"] = f"{verify_sample(sample, txt)}/{len(sample)}"
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile(time.process_time)
        prof.enable()
        for r in rs:
            build(r)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()

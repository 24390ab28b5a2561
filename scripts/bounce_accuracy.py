#!/usr/bin/env python3
"""How well the bounce classifier agrees with a reference analyser on a corpus of real bounces.

    python scripts/bounce_accuracy.py ../shared/corpora/bounces-real [--json] [--show]

The corpus directory holds ``mail/*.eml`` and ``expected.json`` (per file: ``negative``, and
per recipient row ``recipient``, ``hardbounce``, ``class``; see the corpus README). Figures:

- agreement: recipient rows where our "hard" (suppress the address) equals the reference's;
- recipient found: rows naming an address for which we report that same address;
- wrongly suppressed: rows the reference calls not-hard (bounces, delays, delivered,
  undetermined: complaints excluded, suppressing a complainer is intended) that we call hard;
- complaints/autoreplies recognised: files whose rows are complaints or auto-replies that we
  give that kind;
- non-bounces taken for bounces: ``negative`` files we call bounce, delayed or complaint.

``--show`` lists every disagreement (file, address, expected, got, diagnostic) to work from.
Nothing here knows the files: it only compares.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bulkmail.bounces.analyse import Analysis, Judgement, analyse  # noqa: E402

TARGETS = {
    "agreement": (">=", 0.95),
    "recipient_found": (">=", 0.95),
    "wrongly_suppressed": ("<=", 0.02),
    "complaints_autoreplies": (">=", 0.90),
    "non_bounces_as_bounces": ("<=", 0),
}


def _pick(analysis: Analysis, address: str, index: int) -> Judgement | None:
    for r in analysis.recipients:
        if address and r.address == address:
            return r
    unnamed = [r for r in analysis.recipients if not r.address or not address]
    if unnamed:
        return unnamed[min(index, len(unnamed) - 1)]
    if len(analysis.recipients) == 1 and not address:
        return analysis.recipients[0]
    return None


def measure(corpus: Path) -> dict[str, Any]:
    expected: dict[str, dict[str, Any]] = json.loads(
        (corpus / "expected.json").read_text(encoding="utf-8")
    )
    rows = agree = named = found = not_hard = wrong = 0
    special = special_ok = negatives = negatives_wrong = 0
    misses: list[dict[str, Any]] = []
    for name, exp in sorted(expected.items()):
        path = corpus / "mail" / name
        if not path.is_file():
            continue
        analysis = analyse(path.read_bytes(), name)
        if exp["negative"]:
            negatives += 1
            if analysis.kind in ("bounce", "delayed", "complaint"):
                negatives_wrong += 1
                misses.append({"file": name, "problem": f"non-bounce taken for {analysis.kind}"})
            continue
        classes = {r["class"] for r in exp["rows"]}
        for wanted in ("complaint", "autoreply"):
            if wanted in classes:
                special += 1
                if analysis.kind == wanted:
                    special_ok += 1
                else:
                    misses.append(
                        {
                            "file": name,
                            "problem": f"{wanted} seen as {analysis.kind}",
                            "notes": list(analysis.notes),
                        }
                    )
        for i, row in enumerate(exp["rows"]):
            address = row["recipient"].lower()
            got = _pick(analysis, address, i)
            hard = bool(got and got.hard)
            rows += 1
            agree += hard == row["hardbounce"]
            if address:
                named += 1
                found += any(r.address == address for r in analysis.recipients)
            if row["class"] not in ("complaint", "feedback-other") and not row["hardbounce"]:
                not_hard += 1
                wrong += hard
            if hard != row["hardbounce"] or (
                address and not any(r.address == address for r in analysis.recipients)
            ):
                misses.append(
                    {
                        "file": name,
                        "address": address,
                        "expected": f"{'hard' if row['hardbounce'] else 'not-hard'} "
                        f"({row['reason']} {row['status']})",
                        "got": (
                            f"{analysis.kind}: {got.address or '?'} {got.category} "
                            f"{'hard' if got.hard else 'not-hard'} {got.status}"
                            if got
                            else f"{analysis.kind}: no recipient "
                            f"{[r.address for r in analysis.recipients]}"
                        ),
                        "diagnostic": got.diagnostic[:160] if got else "",
                    }
                )

    def share(n: int, d: int) -> float:
        return round(n / d, 4) if d else 1.0

    figures = {
        "agreement": share(agree, rows),
        "recipient_found": share(found, named),
        "wrongly_suppressed": share(wrong, not_hard),
        "complaints_autoreplies": share(special_ok, special),
        "non_bounces_as_bounces": negatives_wrong,
    }
    counts = {
        "rows": rows,
        "named": named,
        "not_hard": not_hard,
        "complaints_autoreplies": special,
        "negatives": negatives,
    }
    met = {
        k: (figures[k] >= t if op == ">=" else figures[k] <= t) for k, (op, t) in TARGETS.items()
    }
    return {"figures": figures, "counts": counts, "targets_met": met, "misses": misses}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, help="directory with mail/ and expected.json")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--show", action="store_true", help="list every disagreement")
    args = ap.parse_args()
    if not (args.corpus / "expected.json").is_file():
        print(f"{args.corpus}: no expected.json here (give the corpus directory)", file=sys.stderr)
        return 2
    result = measure(args.corpus)
    if args.json:
        if not args.show:
            result.pop("misses")
        print(json.dumps(result, indent=1))
        return 0
    if args.show:
        for miss in result["misses"]:
            print(json.dumps(miss, ensure_ascii=False))
    f, c = result["figures"], result["counts"]
    print(f"hard/not-hard agreement   {f['agreement']:.1%} of {c['rows']} recipient rows")
    print(f"recipient found           {f['recipient_found']:.1%} of {c['named']} named")
    print(f"wrongly suppressed        {f['wrongly_suppressed']:.1%} of {c['not_hard']} not-hard")
    print(
        f"complaints/autoreplies    {f['complaints_autoreplies']:.1%} of "
        f"{c['complaints_autoreplies']}"
    )
    print(f"non-bounces as bounces    {f['non_bounces_as_bounces']} of {c['negatives']}")
    print("targets met: " + ", ".join(f"{k}={v}" for k, v in result["targets_met"].items()))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # "| head": the reader has what it wanted
        sys.stderr.close()
        raise SystemExit(0) from None

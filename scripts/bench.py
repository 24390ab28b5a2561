#!/usr/bin/env python3
"""bulkmail's benchmark: the engine next to its baselines, in one run, on this machine.

Receiving side: Postfix's smtp-sink (C) on 127.0.0.2-127.0.0.6, one per destination domain,
answered by a local DNS server. The same recipients, the same ~10 KB personalised newsletter
template and the same DKIM key (RSA-2048, or Ed25519 with --ed25519) for every row:

  (a) naive      smtplib over one connection + stdlib EmailMessage + dkimpy.sign per message
  (b) bulkmail   `bulkmail campaigns send` end to end (claim, route, compose, sign, send, record),
                 with 1 worker process and with 2
  (c) raw        an aiosmtplib loop over 20 sessions sending one prebuilt message
  (d) C limit    Postfix smtp-source blasting the same sinks

Also: composition and signing cost per message, CSV import rows/s, enqueue rows/s, and (with
--export-events N) streaming N events out in bounded memory. Reports messages/s, the ratios
b/a, b/c, b/d, CPU time per message and peak memory; writes everything as JSON too.
Speed is reported, never asserted. Usage:

  python scripts/bench.py                      # 10,000 recipients
  python scripts/bench.py --count 100000 --ed25519 --json bench-out/100k.json
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bulkmail.peers.dns import DnsServer, Zone  # noqa: E402
from bulkmail.peers.smtp import free_port  # noqa: E402

SINKS = [f"127.0.0.{n}" for n in range(2, 7)]
SECRET = "bench-secret-0123456789abcdef"
FROM = "Bench News <news@bench.test>"


def ensure_postfix() -> None:
    if shutil.which("smtp-sink") and shutil.which("smtp-source"):
        return
    print("smtp-sink not found: installing Debian postfix (needs root)...", file=sys.stderr)
    subprocess.run(["bash", str(REPO / "scripts" / "install-test-peers.sh")], check=True)


def measured(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``cmd``; wall seconds, CPU seconds and peak RSS (MB) of it and its children."""
    probe = (
        "import json,resource,subprocess,sys,time\n"
        "t=time.perf_counter(); r=subprocess.run(sys.argv[1:], capture_output=True)\n"
        "w=time.perf_counter()-t; u=resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'wall':w,'cpu':u.ru_utime+u.ru_stime,'rss_mb':u.ru_maxrss/1024,"
        "'rc':r.returncode,'out':r.stdout.decode()[-2000:],'err':r.stderr.decode()[-2000:]}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env, check=True
    )
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed: {result['err']}")
    return result


class World:
    """DNS + smtp-sink processes + a config, database, key and subscriber list."""

    def __init__(self, root: Path, count: int, algorithm: str, database: str | None) -> None:
        self.root, self.count, self.algorithm = root, count, algorithm
        self.port = free_port(SINKS)
        self.db_url = database or f"sqlite:///{root / 'bench.db'}"
        self.sinks: list[subprocess.Popen[bytes]] = []
        self.dns: DnsServer | None = None

    def start(self) -> None:
        from bulkmail.signing.keys import (
            dns_txt_value,
            generate_private_key,
            load_private_key,
            split_txt,
        )

        pem = generate_private_key(self.algorithm, 2048)
        (self.root / "dkim.pem").write_bytes(pem)
        self.key_pem = pem
        zone = Zone()
        zone.add("s1._domainkey.bench.test", "TXT", split_txt(dns_txt_value(load_private_key(pem))))
        for i, ip in enumerate(SINKS):
            zone.add(f"d{i}.bench.test", "MX", f"10 mx{i}.bench.test.")
            zone.add(f"mx{i}.bench.test", "A", ip)
        self.dns = DnsServer(zone).start()
        for ip in SINKS:  # -c: count; backlog 1024; runs as the postfix user
            self.sinks.append(
                subprocess.Popen(
                    ["smtp-sink", "-u", "postfix", "-c", f"{ip}:{self.port}", "1024"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(0.5)
        self.config = self.root / "bulkmail.toml"
        self.config.write_text(
            f"""
[database]
url = "{self.db_url}"
[sender]
helo = "mail.bench.test"
port = {self.port}
tls = "off"
return_path_domain = "bounces.bench.test"
[dns]
nameservers = ["127.0.0.1"]
port = {self.dns.port}
timeout = 2.0
[dkim]
domain = "bench.test"
selector = "s1"
key_file = "dkim.pem"
[limits.default]
connections = 10
messages_per_connection = 1000
[engine]
batch_size = 1000
[unsubscribe]
url = "https://bench.test/unsubscribe"
mailto = "unsubscribe@bench.test"
""",
            encoding="utf-8",
        )
        self.recipients = [f"user{i}@d{i % len(SINKS)}.bench.test" for i in range(self.count)]
        self.csv = self.root / "people.csv"
        with self.csv.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["email", "name", "city"])
            for i, r in enumerate(self.recipients):
                w.writerow([r, f"Reader {i}", ["Oslo", "Lima", "Kyoto"][i % 3]])

    def stop(self) -> None:
        for p in self.sinks:
            p.terminate()
        for p in self.sinks:
            p.wait(timeout=10)
        if self.dns:
            self.dns.stop()

    def env(self) -> dict[str, str]:
        return {**os.environ, "BULKMAIL_SECRET": SECRET, "BULKMAIL_CONFIG": str(self.config)}


# -- (a) naive --------------------------------------------------------------------------------
def bench_naive(world: World, n: int) -> dict[str, float]:
    import dkim
    import jinja2

    tpl = REPO / "templates" / "newsletter"
    env = jinja2.Environment(autoescape=True)
    html_t = env.from_string((tpl / "body.html").read_text(encoding="utf-8"))
    text_t = jinja2.Environment().from_string((tpl / "body.txt").read_text(encoding="utf-8"))
    campaign = {"id": 1, "name": "bench", "subject": "News"}
    cpu0, t0 = time.process_time(), time.perf_counter()
    with smtplib.SMTP(SINKS[0], world.port, local_hostname="mail.bench.test") as smtp:
        for i in range(n):
            sub = {
                "email": world.recipients[i],
                "name": f"Reader {i}",
                "attributes": {"city": "Oslo"},
            }
            ctx = {"subscriber": sub, "campaign": campaign, "unsubscribe_url": "https://x/u"}
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = FROM, sub["email"], f"Hello {sub['name']}"
            msg.set_content(text_t.render(ctx))
            msg.add_alternative(html_t.render(ctx), subtype="html")
            data = msg.as_bytes()
            sig = dkim.sign(
                data, b"s1", b"bench.test", world.key_pem, canonicalize=(b"relaxed", b"relaxed")
            )
            smtp.sendmail("bounces@bench.test", [sub["email"]], sig + data)
    wall = time.perf_counter() - t0
    return {
        "messages": n,
        "wall": wall,
        "cpu": time.process_time() - cpu0,
        "rate": n / wall,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# -- (b) bulkmail -----------------------------------------------------------------------------
def prepare_bulkmail(world: World, profile: bool = False) -> dict[str, float]:
    """Import the list (timed), create one campaign per worker setting."""
    from bulkmail.audience.importer import import_csv
    from bulkmail.audience.lists import create_list
    from bulkmail.campaigns import create_campaign
    from bulkmail.config import load_settings
    from bulkmail.db.engine import Database, upgrade

    os.environ["BULKMAIL_SECRET"] = SECRET
    settings = load_settings(world.config)
    db = Database(world.db_url)
    upgrade(db)
    create_list(db, "bench")
    t0 = time.perf_counter()
    result = import_csv(db, "bench", world.csv)
    import_s = time.perf_counter() - t0
    assert result.imported == world.count, result.rejected[:3]
    world.campaigns = {}
    enqueue_s = []
    from bulkmail.db.models import DRAFT
    from bulkmail.delivery.runner import start_campaign

    for workers in (1, 2, 0) if profile else (1, 2):  # 0: the campaign sent under py-spy
        c = create_campaign(
            db,
            settings,
            name=f"bench-{workers}",
            list_name="bench",
            subject="Hello {{ subscriber.name }}",
            from_header=FROM,
            template="newsletter",
        )
        t0 = time.perf_counter()
        start_campaign(db, c.id, allow=(DRAFT,))
        if workers:
            enqueue_s.append(time.perf_counter() - t0)
        world.campaigns[workers] = c.id
    db.dispose()
    return {
        "import_rows_per_s": world.count / import_s,
        "import_s": import_s,
        "enqueue_rows_per_s": world.count / min(enqueue_s),
        "enqueue_s": min(enqueue_s),
    }


#: Where a worker's time goes: a sample counts for the first step, in this order, with a
#: pattern in any frame of its stack (the RSA call is inside compose+sign, compose inside the
#: engine...); a tuple of several strings must all be in one frame.
PROFILE_STEPS = [
    ("RSA signature (OpenSSL)", [("_sign (", "signing/dkim.py")]),
    ("Jinja2 render (sandboxed)", ["jinja2/", "compose/render.py", "compose/environment.py"]),
    ("body lines: QP + canonical", ["compose/body.py"]),
    ("headers, tokens, MIME join", ["compose/"]),
    ("DKIM header, hash, folding", ["signing/"]),
    ("SMTP transfer (aiosmtplib, transport)", ["aiosmtplib/", "delivery/transport.py"]),
    ("database (SQLAlchemy, SQLite)", ["sqlalchemy/", "sqlite3/", "bulkmail/db/", "recorder.py"]),
    ("event loop, engine, leases, the rest", [""]),
]


def _in(pattern: str | tuple[str, ...], frame: str) -> bool:
    return pattern in frame if isinstance(pattern, str) else all(p in frame for p in pattern)


def profile_shares(raw: Path) -> dict[str, float]:
    """Share of py-spy samples per step of :data:`PROFILE_STEPS` (``-f raw`` output)."""
    counts = dict.fromkeys((name for name, _ in PROFILE_STEPS), 0)
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        frames = stack.split(";")[::-1]
        step = next(
            name
            for name, patterns in PROFILE_STEPS
            if any(_in(p, frame) for frame in frames for p in patterns)
        )
        counts[step] += int(number)
    total = sum(counts.values()) or 1
    return {name: count / total for name, count in counts.items()}


def bench_bulkmail(world: World, workers: int, py_spy: Path | None = None) -> dict[str, float]:
    cid = world.campaigns[workers]
    spy = ["py-spy", "record", "--subprocesses", "-f", "raw", "-o", str(py_spy), "--"]
    r = measured(
        [
            *(spy if py_spy else []),
            sys.executable,
            "-m",
            "bulkmail",
            "campaigns",
            "send",
            str(cid),
            "--workers",
            str(workers or 1),
            "--json",
        ],
        env=world.env(),
    )
    lines = r["out"].strip().splitlines()  # py-spy, when used, writes its own lines too
    summary = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    if summary["sent"] != world.count:
        raise SystemExit(f"bulkmail sent {summary['sent']} of {world.count}: {summary}")
    return {
        "messages": summary["sent"],
        "wall": r["wall"],
        "cpu": r["cpu"],
        "rate": summary["sent"] / r["wall"],
        "rss_mb": r["rss_mb"],
    }


# -- (c) raw transport ------------------------------------------------------------------------
async def _raw(world: World, message: bytes, n: int, sessions: int) -> None:
    import aiosmtplib

    per = [n // sessions + (1 if i < n % sessions else 0) for i in range(sessions)]

    async def one(i: int, count: int) -> None:
        host = SINKS[i % len(SINKS)]
        smtp = aiosmtplib.SMTP(
            hostname=host, port=world.port, local_hostname="mail.bench.test", start_tls=False
        )
        await smtp.connect()
        for k in range(count):
            await smtp.sendmail("bounces@bench.test", [f"raw{k}@d0.bench.test"], message)
        await smtp.quit()

    await asyncio.gather(*(one(i, c) for i, c in enumerate(per)))


def bench_raw(world: World, n: int) -> dict[str, float]:
    from bulkmail.config import load_settings
    from bulkmail.db.engine import Database
    from bulkmail.delivery.pipeline import preview_bytes

    settings = load_settings(world.config)
    db = Database(world.db_url)
    message = preview_bytes(settings, db, world.campaigns[1], world.recipients[0])
    db.dispose()
    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(_raw(world, message, n, 20))
    wall = time.perf_counter() - t0
    return {
        "messages": n,
        "wall": wall,
        "cpu": time.process_time() - cpu0,
        "rate": n / wall,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "message_bytes": len(message),
    }


# -- (d) smtp-source --------------------------------------------------------------------------
def bench_smtp_source(world: World, n: int, size: int) -> dict[str, float]:
    r = measured(
        [
            "smtp-source",
            "-s",
            "20",
            "-m",
            str(n),
            "-l",
            str(size),
            "-M",
            "mail.bench.test",
            "-f",
            "bounces@bench.test",
            "-t",
            "user@d0.bench.test",
            f"{SINKS[0]}:{world.port}",
        ]
    )
    return {
        "messages": n,
        "wall": r["wall"],
        "cpu": r["cpu"],
        "rate": n / r["wall"],
        "rss_mb": r["rss_mb"],
    }


# -- per-message costs ------------------------------------------------------------------------
def bench_costs(world: World) -> dict[str, float]:
    import dkim

    from bulkmail.compose.mime import compose_benchmark
    from bulkmail.signing.dkim import DkimSigner

    compose = compose_benchmark(2000)
    signer = DkimSigner(world.key_pem, "bench.test", "s1")
    from email.message import EmailMessage as _EM

    m = _EM()
    m["From"], m["To"], m["Subject"] = FROM, "a@b.test", "x"
    m.set_content("x" * 10_000)
    data = m.as_bytes().replace(b"\n", b"\r\n")
    t0 = time.perf_counter()
    for _ in range(300):
        signer.signature_header(data)
    ours = (time.perf_counter() - t0) / 300 * 1000
    t0 = time.perf_counter()
    for _ in range(20):
        dkim.sign(data, b"s1", b"bench.test", world.key_pem, canonicalize=(b"relaxed", b"relaxed"))
    theirs = (time.perf_counter() - t0) / 20 * 1000
    return {
        "compose_ms": compose["bulkmail_ms"],
        "compose_stdlib_ms": compose["emailmessage_ms"],
        "compose_per_core_per_s": 1000 / compose["bulkmail_ms"],
        "compose_stdlib_per_core_per_s": 1000 / compose["emailmessage_ms"],
        "sign_ms": ours,
        "sign_dkimpy_ms": theirs,
        "message_bytes": compose["message_bytes"],
    }


def bench_compose_sign(world: World, repeats: int = 7) -> dict[str, float]:
    """CPU ms per message of compose + sign (min of repeats): see scripts/bench_compose.py."""
    sys.path.insert(0, str(REPO / "scripts"))
    import bench_compose as bc

    from bulkmail.compose.mime import Composer

    signers = [bc.DkimSigner(world.key_pem, "bench.test", "s1")]
    composer = Composer(bc.CAMPAIGN, bc.SETTINGS)
    people = bc.people(1000)
    build = bc.signed_builder(composer, signers)
    for person in people[:50]:
        build(person)
    return {
        "compose_cpu_ms": bc.cpu_per_message(composer.compose, people, repeats),
        "compose_sign_cpu_ms": bc.cpu_per_message(build, people, repeats),
    }


def verify_sent_sample(world: World, campaign_id: int, share: int) -> dict[str, object]:
    """dkimpy verifies every ``share``-th recipient's message of the campaign, as the engine
    builds it (same composer, signers, database rows), with the key from the bench's DNS.

    smtp-sink keeps nothing it receives, so the sample is rebuilt the worker's way (one
    composer for the campaign, its line memory warm, ``sign_composed``); a signature that
    does not verify fails the bench.
    """
    import dkim
    import dns.exception
    import dns.resolver

    from bulkmail.campaigns import composer_for, find_recipient
    from bulkmail.config import load_settings
    from bulkmail.db.engine import Database
    from bulkmail.delivery.pipeline import load_signers, sign_composed

    assert world.dns is not None
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = ["127.0.0.1"], world.dns.port

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode(), "TXT", lifetime=timeout)
        except dns.exception.DNSException:
            return None
        return b"".join(answer[0].strings)

    settings = load_settings(world.config)
    db = Database(world.db_url)
    composer, signers = composer_for(settings, db, campaign_id), load_signers(settings)
    sample = world.recipients[::share]
    failed = []
    for address in sample:
        composed = composer.compose(find_recipient(db, campaign_id, address))
        if not dkim.verify(sign_composed(signers, composed), dnsfunc=dnsfunc):
            failed.append(address)
    db.dispose()
    if failed:
        raise SystemExit(f"DKIM does not verify for {len(failed)} of {len(sample)}: {failed[:3]}")
    return {"verified": len(sample), "of": len(sample), "share": f"1 in {share}"}


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = [f"{'':<22}{'msg/s':>10}{'CPU ms/msg':>12}{'peak MB':>10}{'messages':>10}"]
    for name, r in rows.items():
        lines.append(
            f"{name:<22}{r['rate']:>10.0f}{r['cpu'] / r['messages'] * 1000:>12.3f}"
            f"{r['rss_mb']:>10.0f}{r['messages']:>10}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=10_000, help="recipients (default 10000)")
    ap.add_argument(
        "--naive-count",
        type=int,
        default=500,
        help="messages for the naive baseline (its rate is what matters; default 500)",
    )
    ap.add_argument("--ed25519", action="store_true", help="sign with Ed25519 instead of RSA-2048")
    ap.add_argument("--database", default=None, help="database URL (default: a new SQLite file)")
    ap.add_argument(
        "--export-events",
        type=int,
        default=0,
        help="also stream this many synthetic events out (bounded-memory check)",
    )
    ap.add_argument("--json", default="bench-out/bench.json", help="where to write the results")
    ap.add_argument(
        "--bulkmail-only",
        action="store_true",
        help="skip the baselines (a, c, d): for long runs at 1M recipients",
    )
    ap.add_argument(
        "--verify-share",
        type=int,
        default=100,
        help="verify the DKIM of 1 in N recipients' messages with dkimpy (0: none; default 100)",
    )
    ap.add_argument(
        "--py-spy",
        metavar="FILE",
        default=None,
        help="also send once more with 1 worker under py-spy, raw samples to FILE; print shares",
    )
    args = ap.parse_args()
    ensure_postfix()
    results: dict[str, object] = {
        "count": args.count,
        "algorithm": "ed25519-sha256" if args.ed25519 else "rsa-sha256",
        "cores": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="bulkmail-bench-") as tmp:
        world = World(Path(tmp), args.count, "ed25519" if args.ed25519 else "rsa", args.database)
        world.start()
        try:
            results["costs"] = bench_costs(world)
            results["audience"] = prepare_bulkmail(world, profile=bool(args.py_spy))
            rows: dict[str, dict[str, float]] = {}
            if not args.bulkmail_only:
                rows["(a) naive"] = bench_naive(world, min(args.naive_count, args.count))
            rows["(b) bulkmail 1 worker"] = bench_bulkmail(world, 1)
            rows["(b) bulkmail 2 workers"] = bench_bulkmail(world, 2)
            results["compose_sign"] = bench_compose_sign(world)
            if args.py_spy:  # a third send, 1 worker, sampled (slower: not a row)
                bench_bulkmail(world, 0, Path(args.py_spy))
                results["profile"] = profile_shares(Path(args.py_spy))
            if args.verify_share:
                results["dkim_sample"] = verify_sent_sample(
                    world, world.campaigns[2], args.verify_share
                )
            if not args.bulkmail_only:
                raw = bench_raw(world, args.count)
                rows["(c) raw aiosmtplib"] = raw
                rows["(d) smtp-source (C)"] = bench_smtp_source(
                    world, args.count, int(raw["message_bytes"])
                )
        finally:
            world.stop()
        if args.export_events:
            from bulkmail.db.engine import Database, upgrade
            from bulkmail.reports.export import bench_export

            url = f"sqlite:///{Path(tmp) / 'export.db'}"
            upgrade(Database(url))
            results["export"] = bench_export(url, args.export_events)
    results["rows"] = rows
    b = rows["(b) bulkmail 2 workers"]["rate"]
    base = {"a": "(a) naive", "c": "(c) raw aiosmtplib", "d": "(d) smtp-source (C)"}
    ratios = {f"b/{k}": b / rows[name]["rate"] for k, name in base.items() if name in rows}
    if "(a) naive" in rows:
        ratios["b1/a"] = rows["(b) bulkmail 1 worker"]["rate"] / rows["(a) naive"]["rate"]
    results["ratios"] = ratios
    print(
        f"\nbulkmail benchmark: {args.count} recipients, {results['algorithm']}, "
        f"{os.cpu_count()} cores"
    )
    print(table(rows))
    if ratios:
        print(
            "\nratios (bulkmail with 2 workers against each baseline): "
            + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
        )
    c, a = results["costs"], results["audience"]
    print(
        f"compose: {c['compose_ms']:.3f} ms/msg ({c['compose_per_core_per_s']:.0f}/s/core) vs "
        f"stdlib EmailMessage {c['compose_stdlib_ms']:.3f} ms "
        f"({c['compose_stdlib_per_core_per_s']:.0f}/s/core)"
    )
    print(f"DKIM sign: {c['sign_ms']:.3f} ms/msg vs dkimpy {c['sign_dkimpy_ms']:.3f} ms")
    cs = results["compose_sign"]
    print(
        f"compose + sign, CPU per message (min of repeats): {cs['compose_sign_cpu_ms']:.3f} ms "
        f"(compose alone {cs['compose_cpu_ms']:.3f} ms)"
    )
    if "profile" in results:
        print("where a worker's time goes (py-spy samples):")
        for name, share in results["profile"].items():
            print(f"  {name:<40}{share:>6.1%}")
    if "dkim_sample" in results:
        v = results["dkim_sample"]
        print(f"DKIM verified by dkimpy: {v['verified']} of {v['of']} sampled ({v['share']})")
    print(
        f"CSV import: {a['import_rows_per_s']:.0f} rows/s; "
        f"enqueue: {a['enqueue_rows_per_s']:.0f} rows/s"
    )
    if "export" in results:
        e = results["export"]
        print(f"event export: {json.dumps(e)}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"results written to {out}")


if __name__ == "__main__":
    main()

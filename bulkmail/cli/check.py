"""``bulkmail check`` (is the sender ready?) and ``bulkmail dkim keygen`` (a new DKIM key)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from bulkmail.cli.main import App, pass_app
from bulkmail.cli.options import echo_json, json_option
from bulkmail.readiness.checker import campaign_from_domain, run_checks
from bulkmail.readiness.keygen import generate_dkim_key
from bulkmail.readiness.report import render, report_json


@click.command("check")
@click.option(
    "--ip",
    "ips",
    multiple=True,
    metavar="IP",
    help="A sending IP to check (repeatable; adds to [check] ips).",
)
@click.option(
    "--campaign",
    "campaign_id",
    type=int,
    default=None,
    metavar="ID",
    help="Check this campaign's From domain (default: the DKIM domain).",
)
@click.option(
    "--probe",
    metavar="HOST[:PORT]",
    default=None,
    help="Also open a session to this MX host: STARTTLS and its certificate.",
)
@json_option
@pass_app
@click.pass_context
def check(
    ctx: click.Context,
    app: App,
    ips: tuple[str, ...],
    campaign_id: int | None,
    probe: str | None,
    as_json: bool,
) -> None:
    """Will mailbox providers accept our mail? PTR, SPF, DKIM, DMARC, MX, blocklists, TLS.

    Exit code 0 when nothing fails, 1 when a check fails, 2 on a config error.

    \b
    Example:
      bulkmail check --ip 203.0.113.25
      bulkmail check --campaign 3 --probe gmail-smtp-in.l.google.com --json
    """
    from_domain = None
    if campaign_id is not None:
        from_domain = campaign_from_domain(app.ready_db(), campaign_id)
    report = run_checks(app.settings, ips=ips, from_domain=from_domain, probe=probe)
    if as_json:
        echo_json(report_json(report))
    else:
        render(report, Console())
    ctx.exit(report.exit_code)


@click.group("dkim")
def dkim() -> None:
    """DKIM keys: generate a key and the DNS record that publishes it.

    \b
    Example:
      bulkmail dkim keygen --domain example.com --selector 2025a --out keys
    """


@dkim.command("keygen")
@click.option("--domain", required=True, help="The signing domain (d=).")
@click.option("--selector", required=True, help="The selector (s=), e.g. 2025a.")
@click.option(
    "--algorithm",
    type=click.Choice(["rsa", "ed25519"]),
    default="rsa",
    show_default=True,
    help="Key type (sign with both: one key of each).",
)
@click.option("--bits", type=int, default=2048, show_default=True, help="RSA key size.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for the private key.",
)
@click.option("--force", is_flag=True, help="Replace an existing key file.")
@json_option
def keygen(
    domain: str, selector: str, algorithm: str, bits: int, out_dir: Path, force: bool, as_json: bool
) -> None:
    """Write a new private key (mode 0600) and print the TXT record to publish.

    \b
    Example:
      bulkmail dkim keygen --domain example.com --selector 2025a --out keys
      bulkmail dkim keygen --domain example.com --selector 2025e --algorithm ed25519 --out keys
    """
    key = generate_dkim_key(
        domain, selector, algorithm=algorithm, bits=bits, out_dir=out_dir, force=force
    )
    if as_json:
        echo_json(key.as_dict())
        return
    click.echo(f"private key written to {key.key_file} (mode 0600)\n")
    click.echo("publish this DNS record:")
    click.echo(key.zone_line)
    click.echo("\nthen set in bulkmail.toml:")
    click.echo("\n".join(key.config_lines()))


COMMANDS = [check, dkim]

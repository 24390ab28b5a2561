"""``bulkmail config init`` and ``bulkmail config check`` (logic in ``bulkmail.setup_config``)."""

from __future__ import annotations

from pathlib import Path

import click

from bulkmail.cli.main import App, pass_app
from bulkmail.cli.options import echo_json, json_option
from bulkmail.errors import ConfigError
from bulkmail.setup_config import check_config, effective, init_config, to_toml


@click.group("config")
def config() -> None:
    """Configuration: write a starter file, check the effective one."""


@config.command("init")
@click.option("--domain", required=True, help="Your sending (From and DKIM) domain.")
@click.option("--selector", default="s1", show_default=True, help="The DKIM selector.")
@click.option("--helo", default=None, help="EHLO name (default: mail.DOMAIN).")
@click.option("--ip", "ips", multiple=True, help="A sending IP, for the SPF record (repeat).")
@click.option("--force", is_flag=True, help="Replace an existing config file and key.")
@json_option
@pass_app
def init(
    app: App,
    domain: str,
    selector: str,
    helo: str | None,
    ips: tuple[str, ...],
    force: bool,
    as_json: bool,
) -> None:
    """Write a commented bulkmail.toml and a DKIM key; print the DNS records to publish.

    The file goes to --config PATH (or $BULKMAIL_CONFIG, else ./bulkmail.toml), the key to
    keys/ beside it (mode 0600). Then publish the records, set BULKMAIL_SECRET, and run
    'bulkmail init' and 'bulkmail check'.

    \b
    Example:
      bulkmail config init --domain news.example --ip 203.0.113.25
    """
    path = Path(app.config_path or "bulkmail.toml")
    started = init_config(path, domain, selector=selector, helo=helo, ips=ips, force=force)
    if as_json:
        echo_json(started.as_dict())
        return
    click.echo(f"wrote {started.config_file}")
    click.echo(f"wrote {started.key.key_file} (DKIM, RSA-2048, mode 0600)")
    click.echo("\nPublish these DNS records:")
    click.echo(f"  ; DKIM public key\n  {started.key.zone_line}")
    for record in started.records:
        click.echo(f"  ; {record.why}\n  {record.line}")
    click.echo(
        "\nSet the secret (keep it: changing it breaks the links in mail already sent):\n"
        "  export BULKMAIL_SECRET=$(openssl rand -hex 32)\n"
        "Then: bulkmail init && bulkmail check"
    )


@config.command("check")
@json_option
@pass_app
def check(app: App, as_json: bool) -> None:
    """Validate the configuration and print its effective values, secrets left out.

    Exit code 0 when it is usable, 2 when something is wrong (each problem one line).

    \b
    Example:
      bulkmail --config /etc/bulkmail/bulkmail.toml config check
    """
    from bulkmail.cli.notices import config_notices

    checked = check_config(app.config_path)
    for notice in config_notices(checked.settings):
        click.echo(f"bulkmail: warning: {notice}", err=True)
    data = effective(checked.settings)
    if as_json:
        echo_json(
            {
                "source": checked.settings.source,
                "settings": data,
                "environment": checked.environment,
                "problems": checked.problems,
            }
        )
    else:
        click.echo(f"# effective configuration from {checked.settings.source}")
        for name, state in checked.environment.items():
            click.echo(f"# ${name}: {state}")
        click.echo(to_toml(data), nl=False)
    for problem in checked.problems:
        click.echo(f"bulkmail: error: {problem}", err=True)
    if checked.problems:
        raise SystemExit(ConfigError.exit_code)


COMMANDS = [config]

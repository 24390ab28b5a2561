"""Message composition: templates in, ready-to-sign RFC 5322 bytes out.

``Composer(campaign, settings)`` compiles a campaign's templates once; ``compose(recipient)``
then renders and assembles one personalised message from precompiled parts. Tokens tie
each message (unsubscribe link, VERP return path, Message-ID) back to its delivery.
"""

from bulkmail.compose.mime import Composed, Composer, ComposeSettings, compose_benchmark
from bulkmail.compose.render import CampaignInfo, Recipient
from bulkmail.compose.text import html_to_text
from bulkmail.compose.tokens import (
    make_token,
    message_id,
    parse_token,
    parse_verp,
    verp_address,
)

__all__ = [
    "CampaignInfo",
    "ComposeSettings",
    "Composed",
    "Composer",
    "Recipient",
    "compose_benchmark",
    "html_to_text",
    "make_token",
    "message_id",
    "parse_token",
    "parse_verp",
    "verp_address",
]

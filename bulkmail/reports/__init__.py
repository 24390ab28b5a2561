"""Reports: what happened in a send, for an operator who should not have to write SQL.

``build_report`` aggregates a campaign in the database (data.py) into typed values
(model.py) that three renderers read: a terminal (text.py), JSON (``CampaignReport.to_dict``)
and one self-contained HTML file with inline SVG charts (html.py, svg.py). ``campaign_lines``
gives ``campaigns list`` its one line per campaign; ``export_events`` streams the event log.
"""

from bulkmail.reports.data import build_report
from bulkmail.reports.export import bench_export, export_events, parse_since
from bulkmail.reports.lines import campaign_lines, format_campaign_line
from bulkmail.reports.model import CampaignReport

__all__ = [
    "CampaignReport",
    "bench_export",
    "build_report",
    "campaign_lines",
    "export_events",
    "format_campaign_line",
    "parse_since",
]

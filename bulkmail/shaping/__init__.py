"""Traffic shaping: provider rule packs (sites and limits by MX suffix) and adaptive backoff
(replies that suspend or throttle a site for a while, shared by a fleet through the database)."""

"""The bench table for endpoint (b); kept apart from ``bench.urls`` so the benchmark driver can
create it without importing Django's URLconf."""

BENCH_TABLE = "bench_ack"
CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {BENCH_TABLE} "
    "(id BIGSERIAL PRIMARY KEY, event_id TEXT UNIQUE NOT NULL, type TEXT NOT NULL, "
    "body TEXT NOT NULL, received_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)

"""Schemathesis hooks for scripts/fuzz-api.sh.

The OpenAPI document states every constraint of a single field. A few rules tie a field to another
one, or to the clock, and JSON Schema cannot state them (they are in the fields' descriptions):

- POST /api/v1/jobs (and each item of POST /api/v1/jobs/batch): `backoff_max_ms` is at least
  `backoff_base_ms` (default 1000);
- schedules: `end_at` is in the future; `jitter_ms` is shorter than the time between two ticks;
- servers: each of `host_keys` is a real public key (its base64 blob names the key's algorithm), and
  `ssh_credential_id` names an SSH key of the organization;
- heartbeat checks: `min_runtime_seconds` is at most `max_runtime_seconds`;
- configs: inside `payload`, an object with a `secret` key is a secret value (`{"secret": "..."}` or
  `{"secret": true}`, which keeps a stored one) and `$secret` is reserved.

Generated bodies that break one of these are dropped, so that `positive_data_acceptance` checks the
rest of each body instead of failing on a rule the document cannot express.
"""

from datetime import datetime, timedelta, timezone

import schemathesis


def _int(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _in_the_past(value):
    if not isinstance(value, str):
        return False
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    if at.tzinfo is None:
        return False
    return at <= datetime.now(timezone.utc) + timedelta(minutes=5)


def _jitter_too_long(body):
    jitter = _int(body.get("jitter_ms"))
    if not jitter:
        return False
    interval = _int(body.get("interval_secs"))
    if interval is not None:
        return jitter >= interval * 1000
    if isinstance(body.get("cron"), str):
        # The document's cron expressions tick at most once a minute.
        return jitter >= 60_000
    # A patch keeps the stored trigger, which may tick every second.
    return jitter >= 1000


def _backoff_ok(body):
    if not isinstance(body, dict):
        return True
    base = _int(body.get("backoff_base_ms"))
    top = _int(body.get("backoff_max_ms"))
    return top is None or top >= (1000 if base is None else base)


def _has_secret_markers(value):
    if isinstance(value, dict):
        return "secret" in value or "$secret" in value or any(_has_secret_markers(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secret_markers(v) for v in value)
    return False


@schemathesis.hook
def filter_body(ctx, body):
    if not isinstance(body, dict):
        return True
    op = ctx.operation
    if op.path.startswith("/api/v1/monitoring/heartbeats"):
        low, high = _int(body.get("min_runtime_seconds")), _int(body.get("max_runtime_seconds"))
        return low is None or high is None or low <= high
    if op.method.upper() == "POST" and op.path == "/api/v1/jobs":
        return _backoff_ok(body)
    if op.method.upper() == "POST" and op.path == "/api/v1/jobs/batch":
        jobs = body.get("jobs")
        return not isinstance(jobs, list) or all(_backoff_ok(job) for job in jobs)
    if op.path in ("/api/v1/schedules", "/api/v1/schedules/{id}") and op.method.upper() in ("POST", "PUT", "PATCH"):
        return not (_in_the_past(body.get("end_at")) or _jitter_too_long(body))
    if op.path in ("/api/v1/configs", "/api/v1/configs/{id}") and op.method.upper() in ("POST", "PUT"):
        return not _has_secret_markers(body.get("payload"))
    if op.path in ("/api/v1/servers", "/api/v1/servers/{id}") and op.method.upper() in ("POST", "PATCH"):
        # Random strings are never public keys whose blob names their algorithm.
        keys = body.get("host_keys")
        # Nor is a random UUID the id of an uploaded SSH key.
        return not (isinstance(keys, list) and keys) and body.get("ssh_credential_id") is None
    return True

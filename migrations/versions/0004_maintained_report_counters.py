"""maintained report counters

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 03:06:48.290885

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


COUNTERS_DDL = r"""
LOCK TABLE leads, call_attempts IN SHARE ROW EXCLUSIVE MODE;

CREATE OR REPLACE FUNCTION campaign_counters_leads() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
INSERT INTO campaign_counters (campaign_id, kind, key, n, total)
SELECT campaign_id, kind, key, CASE WHEN kind IN ('agent_first', 'agent_last') THEN 1 ELSE sum(n) END, CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END FROM (
SELECT g.campaign_id, f.kind, f.key, g.n, 0::bigint AS total FROM (
  SELECT r.campaign_id, r.status::text AS status,
    CASE WHEN r.status = 'pending' THEN coalesce(r.blocked_reason, '') END AS reason,
    CASE WHEN r.status = 'pending' THEN date_trunc('second', r.next_attempt_at AT TIME ZONE 'UTC') END AS due,
    CASE WHEN r.status IN ('cancelled', 'contacted', 'dnc', 'exhausted', 'invalid') THEN date_trunc('minute', r.updated_at AT TIME ZONE 'UTC') END AS fin,
    count(*)::bigint AS n
  FROM new_rows AS r GROUP BY 1, 2, 3, 4, 5
) AS g
CROSS JOIN LATERAL (VALUES
  ('lead_status', g.status),
  ('pending_at', g.reason || '@' || to_char(g.due, 'YYYY-MM-DD"T"HH24:MI:SS')),
  ('finished_minute', to_char(g.fin, 'YYYY-MM-DD"T"HH24:MI'))
) AS f(kind, key)
WHERE f.key IS NOT NULL) AS d
GROUP BY campaign_id, kind, key HAVING sum(n) <> 0 OR CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END <> 0;
  ELSE
INSERT INTO campaign_counters (campaign_id, kind, key, n, total)
SELECT campaign_id, kind, key, CASE WHEN kind IN ('agent_first', 'agent_last') THEN 1 ELSE sum(n) END, CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END FROM (
SELECT g.campaign_id, f.kind, f.key, g.n, 0::bigint AS total FROM (
  SELECT r.campaign_id, r.status::text AS status,
    CASE WHEN r.status = 'pending' THEN coalesce(r.blocked_reason, '') END AS reason,
    CASE WHEN r.status = 'pending' THEN date_trunc('second', r.next_attempt_at AT TIME ZONE 'UTC') END AS due,
    CASE WHEN r.status IN ('cancelled', 'contacted', 'dnc', 'exhausted', 'invalid') THEN date_trunc('minute', r.updated_at AT TIME ZONE 'UTC') END AS fin,
    count(*)::bigint AS n
  FROM new_rows AS r GROUP BY 1, 2, 3, 4, 5
) AS g
CROSS JOIN LATERAL (VALUES
  ('lead_status', g.status),
  ('pending_at', g.reason || '@' || to_char(g.due, 'YYYY-MM-DD"T"HH24:MI:SS')),
  ('finished_minute', to_char(g.fin, 'YYYY-MM-DD"T"HH24:MI'))
) AS f(kind, key)
WHERE f.key IS NOT NULL
UNION ALL SELECT campaign_id, kind, key, -n AS n, -total AS total FROM (
SELECT g.campaign_id, f.kind, f.key, g.n, 0::bigint AS total FROM (
  SELECT r.campaign_id, r.status::text AS status,
    CASE WHEN r.status = 'pending' THEN coalesce(r.blocked_reason, '') END AS reason,
    CASE WHEN r.status = 'pending' THEN date_trunc('second', r.next_attempt_at AT TIME ZONE 'UTC') END AS due,
    CASE WHEN r.status IN ('cancelled', 'contacted', 'dnc', 'exhausted', 'invalid') THEN date_trunc('minute', r.updated_at AT TIME ZONE 'UTC') END AS fin,
    count(*)::bigint AS n
  FROM old_rows AS r GROUP BY 1, 2, 3, 4, 5
) AS g
CROSS JOIN LATERAL (VALUES
  ('lead_status', g.status),
  ('pending_at', g.reason || '@' || to_char(g.due, 'YYYY-MM-DD"T"HH24:MI:SS')),
  ('finished_minute', to_char(g.fin, 'YYYY-MM-DD"T"HH24:MI'))
) AS f(kind, key)
WHERE f.key IS NOT NULL) AS o) AS d
GROUP BY campaign_id, kind, key HAVING sum(n) <> 0 OR CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END <> 0;
  END IF;
  RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION campaign_counters_attempts() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
INSERT INTO campaign_counters (campaign_id, kind, key, n, total)
SELECT campaign_id, kind, key, CASE WHEN kind IN ('agent_first', 'agent_last') THEN 1 ELSE sum(n) END, CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END FROM (
SELECT g.campaign_id, f.kind, f.key, f.n, f.total FROM (
  SELECT r.campaign_id,
    GROUPING(r.status) AS gs, GROUPING(r.hangup_cause) AS gh, GROUPING(date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC')) AS gm,
    GROUPING(r.agent_id) AS ga, GROUPING(r.attempt_no) AS gp,
    r.status::text AS status, r.hangup_cause::text AS cause, date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC') AS minute,
    r.agent_id::text AS agent, r.attempt_no::text AS pass,
    count(*)::bigint AS n,
    count(*) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated'))::bigint AS placed,
    count(*) FILTER (WHERE r.status = 'completed')::bigint AS done,
    coalesce(sum(r.billsec) FILTER (WHERE r.status = 'completed'), 0)::bigint AS talk,
    count(*) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated') AND r.ended_at IS NOT NULL)::bigint AS ended,
    coalesce(sum(coalesce(r.duration, r.billsec, 0)) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated') AND r.ended_at IS NOT NULL), 0)::bigint
      AS busy
  FROM new_rows AS r
  GROUP BY r.campaign_id, GROUPING SETS ((r.status), (r.hangup_cause), (date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC')), (r.agent_id), (r.attempt_no))
) AS g
CROSS JOIN LATERAL (VALUES
  ('attempt_status', CASE WHEN g.gs = 0 THEN g.status END, g.n, 0::bigint),
  ('talk', CASE WHEN g.gs = 0 AND g.status = 'completed' THEN '' END, g.done, g.talk),
  ('hangup_cause', CASE WHEN g.gh = 0 THEN g.cause END, g.n, 0),
  ('calls_minute', CASE WHEN g.gm = 0 THEN to_char(g.minute, 'YYYY-MM-DD"T"HH24:MI') END, g.placed, 0),
  ('contacts_minute', CASE WHEN g.gm = 0 THEN to_char(g.minute, 'YYYY-MM-DD"T"HH24:MI') END, g.done, 0),
  ('agent_calls', CASE WHEN g.ga = 0 THEN g.agent END, g.placed, 0),
  ('agent_contacts', CASE WHEN g.ga = 0 THEN g.agent END, g.done, g.talk),
  ('agent_busy', CASE WHEN g.ga = 0 THEN g.agent END, g.ended, g.busy),
  ('pass_calls', CASE WHEN g.gp = 0 THEN g.pass END, g.placed, 0),
  ('pass_contacts', CASE WHEN g.gp = 0 THEN g.pass END, g.done, 0)
) AS f(kind, key, n, total)
WHERE f.key IS NOT NULL AND (f.n <> 0 OR f.total <> 0)) AS d
GROUP BY campaign_id, kind, key HAVING sum(n) <> 0 OR CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END <> 0;
INSERT INTO campaign_counters (campaign_id, kind, key, n, total)
SELECT campaign_id, kind, key, CASE WHEN kind IN ('agent_first', 'agent_last') THEN 1 ELSE sum(n) END, CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END FROM (
SELECT g.campaign_id, f.kind, g.agent AS key, 1::bigint AS n, f.total FROM (
  SELECT r.campaign_id, r.agent_id::text AS agent,
    min(r.dialed_at) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated')) AS first_dial,
    max(r.ended_at) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated')) AS last_end
  FROM new_rows AS r WHERE r.agent_id IS NOT NULL GROUP BY 1, 2
) AS g
CROSS JOIN LATERAL (VALUES
  ('agent_first', extract(epoch FROM g.first_dial)::bigint),
  ('agent_last', extract(epoch FROM g.last_end)::bigint)
) AS f(kind, total)
WHERE f.total IS NOT NULL) AS d
GROUP BY campaign_id, kind, key HAVING sum(n) <> 0 OR CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END <> 0;
INSERT INTO campaign_counters (campaign_id, kind, key, n, total)
SELECT campaign_id, kind, key, CASE WHEN kind IN ('agent_first', 'agent_last') THEN 1 ELSE sum(n) END, CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END FROM (
SELECT campaign_id, 'leads_attempted' AS kind, '' AS key, sum(now_placed - before_placed)::bigint AS n, 0::bigint AS total
FROM (
  SELECT d.campaign_id, (c.placed > 0)::int AS now_placed, (c.placed - d.dp > 0)::int AS before_placed
  FROM (
    SELECT lead_id, campaign_id, sum(p) AS dp FROM (
      SELECT lead_id, campaign_id, (status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated'))::int AS p FROM new_rows
    ) AS x GROUP BY lead_id, campaign_id HAVING sum(p) <> 0
  ) AS d
  CROSS JOIN LATERAL (
    SELECT count(*) AS placed FROM call_attempts AS a WHERE a.lead_id = d.lead_id AND a.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated')
  ) AS c
) AS y GROUP BY campaign_id HAVING sum(now_placed - before_placed) <> 0) AS d
GROUP BY campaign_id, kind, key HAVING sum(n) <> 0 OR CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END <> 0;
  ELSE
INSERT INTO campaign_counters (campaign_id, kind, key, n, total)
SELECT campaign_id, kind, key, CASE WHEN kind IN ('agent_first', 'agent_last') THEN 1 ELSE sum(n) END, CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END FROM (
SELECT g.campaign_id, f.kind, f.key, f.n, f.total FROM (
  SELECT r.campaign_id,
    GROUPING(r.status) AS gs, GROUPING(r.hangup_cause) AS gh, GROUPING(date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC')) AS gm,
    GROUPING(r.agent_id) AS ga, GROUPING(r.attempt_no) AS gp,
    r.status::text AS status, r.hangup_cause::text AS cause, date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC') AS minute,
    r.agent_id::text AS agent, r.attempt_no::text AS pass,
    count(*)::bigint AS n,
    count(*) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated'))::bigint AS placed,
    count(*) FILTER (WHERE r.status = 'completed')::bigint AS done,
    coalesce(sum(r.billsec) FILTER (WHERE r.status = 'completed'), 0)::bigint AS talk,
    count(*) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated') AND r.ended_at IS NOT NULL)::bigint AS ended,
    coalesce(sum(coalesce(r.duration, r.billsec, 0)) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated') AND r.ended_at IS NOT NULL), 0)::bigint
      AS busy
  FROM new_rows AS r
  GROUP BY r.campaign_id, GROUPING SETS ((r.status), (r.hangup_cause), (date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC')), (r.agent_id), (r.attempt_no))
) AS g
CROSS JOIN LATERAL (VALUES
  ('attempt_status', CASE WHEN g.gs = 0 THEN g.status END, g.n, 0::bigint),
  ('talk', CASE WHEN g.gs = 0 AND g.status = 'completed' THEN '' END, g.done, g.talk),
  ('hangup_cause', CASE WHEN g.gh = 0 THEN g.cause END, g.n, 0),
  ('calls_minute', CASE WHEN g.gm = 0 THEN to_char(g.minute, 'YYYY-MM-DD"T"HH24:MI') END, g.placed, 0),
  ('contacts_minute', CASE WHEN g.gm = 0 THEN to_char(g.minute, 'YYYY-MM-DD"T"HH24:MI') END, g.done, 0),
  ('agent_calls', CASE WHEN g.ga = 0 THEN g.agent END, g.placed, 0),
  ('agent_contacts', CASE WHEN g.ga = 0 THEN g.agent END, g.done, g.talk),
  ('agent_busy', CASE WHEN g.ga = 0 THEN g.agent END, g.ended, g.busy),
  ('pass_calls', CASE WHEN g.gp = 0 THEN g.pass END, g.placed, 0),
  ('pass_contacts', CASE WHEN g.gp = 0 THEN g.pass END, g.done, 0)
) AS f(kind, key, n, total)
WHERE f.key IS NOT NULL AND (f.n <> 0 OR f.total <> 0)
UNION ALL SELECT campaign_id, kind, key, -n AS n, -total AS total FROM (
SELECT g.campaign_id, f.kind, f.key, f.n, f.total FROM (
  SELECT r.campaign_id,
    GROUPING(r.status) AS gs, GROUPING(r.hangup_cause) AS gh, GROUPING(date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC')) AS gm,
    GROUPING(r.agent_id) AS ga, GROUPING(r.attempt_no) AS gp,
    r.status::text AS status, r.hangup_cause::text AS cause, date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC') AS minute,
    r.agent_id::text AS agent, r.attempt_no::text AS pass,
    count(*)::bigint AS n,
    count(*) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated'))::bigint AS placed,
    count(*) FILTER (WHERE r.status = 'completed')::bigint AS done,
    coalesce(sum(r.billsec) FILTER (WHERE r.status = 'completed'), 0)::bigint AS talk,
    count(*) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated') AND r.ended_at IS NOT NULL)::bigint AS ended,
    coalesce(sum(coalesce(r.duration, r.billsec, 0)) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated') AND r.ended_at IS NOT NULL), 0)::bigint
      AS busy
  FROM old_rows AS r
  GROUP BY r.campaign_id, GROUPING SETS ((r.status), (r.hangup_cause), (date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC')), (r.agent_id), (r.attempt_no))
) AS g
CROSS JOIN LATERAL (VALUES
  ('attempt_status', CASE WHEN g.gs = 0 THEN g.status END, g.n, 0::bigint),
  ('talk', CASE WHEN g.gs = 0 AND g.status = 'completed' THEN '' END, g.done, g.talk),
  ('hangup_cause', CASE WHEN g.gh = 0 THEN g.cause END, g.n, 0),
  ('calls_minute', CASE WHEN g.gm = 0 THEN to_char(g.minute, 'YYYY-MM-DD"T"HH24:MI') END, g.placed, 0),
  ('contacts_minute', CASE WHEN g.gm = 0 THEN to_char(g.minute, 'YYYY-MM-DD"T"HH24:MI') END, g.done, 0),
  ('agent_calls', CASE WHEN g.ga = 0 THEN g.agent END, g.placed, 0),
  ('agent_contacts', CASE WHEN g.ga = 0 THEN g.agent END, g.done, g.talk),
  ('agent_busy', CASE WHEN g.ga = 0 THEN g.agent END, g.ended, g.busy),
  ('pass_calls', CASE WHEN g.gp = 0 THEN g.pass END, g.placed, 0),
  ('pass_contacts', CASE WHEN g.gp = 0 THEN g.pass END, g.done, 0)
) AS f(kind, key, n, total)
WHERE f.key IS NOT NULL AND (f.n <> 0 OR f.total <> 0)) AS o) AS d
GROUP BY campaign_id, kind, key HAVING sum(n) <> 0 OR CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END <> 0;
INSERT INTO campaign_counters (campaign_id, kind, key, n, total)
SELECT campaign_id, kind, key, CASE WHEN kind IN ('agent_first', 'agent_last') THEN 1 ELSE sum(n) END, CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END FROM (
SELECT g.campaign_id, f.kind, g.agent AS key, 1::bigint AS n, f.total FROM (
  SELECT r.campaign_id, r.agent_id::text AS agent,
    min(r.dialed_at) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated')) AS first_dial,
    max(r.ended_at) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated')) AS last_end
  FROM (SELECT n.* FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id WHERE (n.status, n.dialed_at, n.ended_at) IS DISTINCT FROM (o.status, o.dialed_at, o.ended_at)) AS r WHERE r.agent_id IS NOT NULL GROUP BY 1, 2
) AS g
CROSS JOIN LATERAL (VALUES
  ('agent_first', extract(epoch FROM g.first_dial)::bigint),
  ('agent_last', extract(epoch FROM g.last_end)::bigint)
) AS f(kind, total)
WHERE f.total IS NOT NULL) AS d
GROUP BY campaign_id, kind, key HAVING sum(n) <> 0 OR CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END <> 0;
INSERT INTO campaign_counters (campaign_id, kind, key, n, total)
SELECT campaign_id, kind, key, CASE WHEN kind IN ('agent_first', 'agent_last') THEN 1 ELSE sum(n) END, CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END FROM (
SELECT campaign_id, 'leads_attempted' AS kind, '' AS key, sum(now_placed - before_placed)::bigint AS n, 0::bigint AS total
FROM (
  SELECT d.campaign_id, (c.placed > 0)::int AS now_placed, (c.placed - d.dp > 0)::int AS before_placed
  FROM (
    SELECT lead_id, campaign_id, sum(p) AS dp FROM (
      SELECT lead_id, campaign_id, (status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated'))::int AS p FROM new_rows UNION ALL SELECT lead_id, campaign_id, -((status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated'))::int) FROM old_rows
    ) AS x GROUP BY lead_id, campaign_id HAVING sum(p) <> 0
  ) AS d
  CROSS JOIN LATERAL (
    SELECT count(*) AS placed FROM call_attempts AS a WHERE a.lead_id = d.lead_id AND a.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated')
  ) AS c
) AS y GROUP BY campaign_id HAVING sum(now_placed - before_placed) <> 0) AS d
GROUP BY campaign_id, kind, key HAVING sum(n) <> 0 OR CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END <> 0;
  END IF;
  RETURN NULL;
END
$fn$;

CREATE TRIGGER campaign_counters_leads_ins AFTER INSERT ON leads REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION campaign_counters_leads();
CREATE TRIGGER campaign_counters_leads_upd AFTER UPDATE ON leads REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION campaign_counters_leads();
CREATE TRIGGER campaign_counters_attempts_ins AFTER INSERT ON call_attempts REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION campaign_counters_attempts();
CREATE TRIGGER campaign_counters_attempts_upd AFTER UPDATE ON call_attempts REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION campaign_counters_attempts();

INSERT INTO campaign_counters (campaign_id, kind, key, n, total)
SELECT campaign_id, kind, key, CASE WHEN kind IN ('agent_first', 'agent_last') THEN 1 ELSE sum(n) END, CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END FROM (
SELECT g.campaign_id, f.kind, f.key, g.n, 0::bigint AS total FROM (
  SELECT r.campaign_id, r.status::text AS status,
    CASE WHEN r.status = 'pending' THEN coalesce(r.blocked_reason, '') END AS reason,
    CASE WHEN r.status = 'pending' THEN date_trunc('second', r.next_attempt_at AT TIME ZONE 'UTC') END AS due,
    CASE WHEN r.status IN ('cancelled', 'contacted', 'dnc', 'exhausted', 'invalid') THEN date_trunc('minute', r.updated_at AT TIME ZONE 'UTC') END AS fin,
    count(*)::bigint AS n
  FROM leads AS r GROUP BY 1, 2, 3, 4, 5
) AS g
CROSS JOIN LATERAL (VALUES
  ('lead_status', g.status),
  ('pending_at', g.reason || '@' || to_char(g.due, 'YYYY-MM-DD"T"HH24:MI:SS')),
  ('finished_minute', to_char(g.fin, 'YYYY-MM-DD"T"HH24:MI'))
) AS f(kind, key)
WHERE f.key IS NOT NULL
UNION ALL 
SELECT g.campaign_id, f.kind, f.key, f.n, f.total FROM (
  SELECT r.campaign_id,
    GROUPING(r.status) AS gs, GROUPING(r.hangup_cause) AS gh, GROUPING(date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC')) AS gm,
    GROUPING(r.agent_id) AS ga, GROUPING(r.attempt_no) AS gp,
    r.status::text AS status, r.hangup_cause::text AS cause, date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC') AS minute,
    r.agent_id::text AS agent, r.attempt_no::text AS pass,
    count(*)::bigint AS n,
    count(*) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated'))::bigint AS placed,
    count(*) FILTER (WHERE r.status = 'completed')::bigint AS done,
    coalesce(sum(r.billsec) FILTER (WHERE r.status = 'completed'), 0)::bigint AS talk,
    count(*) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated') AND r.ended_at IS NOT NULL)::bigint AS ended,
    coalesce(sum(coalesce(r.duration, r.billsec, 0)) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated') AND r.ended_at IS NOT NULL), 0)::bigint
      AS busy
  FROM call_attempts AS r
  GROUP BY r.campaign_id, GROUPING SETS ((r.status), (r.hangup_cause), (date_trunc('minute', r.dialed_at AT TIME ZONE 'UTC')), (r.agent_id), (r.attempt_no))
) AS g
CROSS JOIN LATERAL (VALUES
  ('attempt_status', CASE WHEN g.gs = 0 THEN g.status END, g.n, 0::bigint),
  ('talk', CASE WHEN g.gs = 0 AND g.status = 'completed' THEN '' END, g.done, g.talk),
  ('hangup_cause', CASE WHEN g.gh = 0 THEN g.cause END, g.n, 0),
  ('calls_minute', CASE WHEN g.gm = 0 THEN to_char(g.minute, 'YYYY-MM-DD"T"HH24:MI') END, g.placed, 0),
  ('contacts_minute', CASE WHEN g.gm = 0 THEN to_char(g.minute, 'YYYY-MM-DD"T"HH24:MI') END, g.done, 0),
  ('agent_calls', CASE WHEN g.ga = 0 THEN g.agent END, g.placed, 0),
  ('agent_contacts', CASE WHEN g.ga = 0 THEN g.agent END, g.done, g.talk),
  ('agent_busy', CASE WHEN g.ga = 0 THEN g.agent END, g.ended, g.busy),
  ('pass_calls', CASE WHEN g.gp = 0 THEN g.pass END, g.placed, 0),
  ('pass_contacts', CASE WHEN g.gp = 0 THEN g.pass END, g.done, 0)
) AS f(kind, key, n, total)
WHERE f.key IS NOT NULL AND (f.n <> 0 OR f.total <> 0)
UNION ALL 
SELECT g.campaign_id, f.kind, g.agent AS key, 1::bigint AS n, f.total FROM (
  SELECT r.campaign_id, r.agent_id::text AS agent,
    min(r.dialed_at) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated')) AS first_dial,
    max(r.ended_at) FILTER (WHERE r.status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated')) AS last_end
  FROM call_attempts AS r WHERE r.agent_id IS NOT NULL GROUP BY 1, 2
) AS g
CROSS JOIN LATERAL (VALUES
  ('agent_first', extract(epoch FROM g.first_dial)::bigint),
  ('agent_last', extract(epoch FROM g.last_end)::bigint)
) AS f(kind, total)
WHERE f.total IS NOT NULL
UNION ALL SELECT campaign_id, 'leads_attempted', '', count(DISTINCT lead_id), 0 FROM call_attempts WHERE status IN ('agent_answered', 'agent_missed', 'ambiguous', 'busy', 'completed', 'customer_answered', 'dialing', 'failed', 'lost', 'no_answer', 'originated') GROUP BY campaign_id) AS d
GROUP BY campaign_id, kind, key HAVING sum(n) <> 0 OR CASE WHEN kind = 'agent_first' THEN min(total) WHEN kind = 'agent_last' THEN max(total) ELSE sum(total) END <> 0;
"""

DROP_COUNTERS_DDL = r"""DROP TRIGGER IF EXISTS campaign_counters_leads_ins ON leads;
DROP TRIGGER IF EXISTS campaign_counters_leads_upd ON leads;
DROP TRIGGER IF EXISTS campaign_counters_attempts_ins ON call_attempts;
DROP TRIGGER IF EXISTS campaign_counters_attempts_upd ON call_attempts;
DROP FUNCTION IF EXISTS campaign_counters_leads();
DROP FUNCTION IF EXISTS campaign_counters_attempts();"""


def upgrade() -> None:
    """Upgrade schema."""
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "campaign_counters",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_counters")),
    )
    op.create_index(op.f("ix_campaign_counters_campaign_id"), "campaign_counters", ["campaign_id"], unique=False)
    # ### end Alembic commands ###
    # A frozen copy of dialer.reports.counters_ddl() at this revision: functions, triggers and the
    # backfill. Changing a report definition means a new migration, not an edit here.
    op.execute(COUNTERS_DDL)


def downgrade() -> None:
    """Downgrade schema."""
    op.execute(DROP_COUNTERS_DDL)
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_index(op.f("ix_campaign_counters_campaign_id"), table_name="campaign_counters")
    op.drop_table("campaign_counters")
    # ### end Alembic commands ###

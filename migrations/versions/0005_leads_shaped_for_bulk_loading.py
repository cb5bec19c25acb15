"""leads shaped for bulk loading: one phone index, set-based reference checks, compact custom fields

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 05:20:00.000000

A million-row import spent most of its time in Postgres on work per row that a bulk load need not
do (issue 3). This revision:

- replaces the two phone indexes, unique (campaign_id, phone_e164) and (phone_e164), by one
  unique (phone_e164, campaign_id): it enforces the same rule and serves the look-ups by number
  across campaigns (caps, DNC at dispatch). Look-ups by campaign use ix_leads_dispatch.
- replaces the foreign keys leads.campaign_id and leads.import_job_id, which Postgres checks with
  one query per inserted row, by the same rules checked once per statement over its transition
  table (triggers below): the referenced rows are locked FOR KEY SHARE as a foreign key would,
  a missing one raises foreign_key_violation, deleting a campaign deletes its leads, deleting an
  import job sets leads.import_job_id to NULL, and a referenced id cannot change.
- stores an imported lead's custom fields as leads.custom_values (text[], one cell per custom
  column, '' for an empty cell) against import_jobs.custom_keys (the headers, once per import;
  NULL for a column empty in every stored row) instead of a JSON object repeating every header
  on every row. lead_custom_fields() rebuilds the object; leads.custom_fields keeps the fields
  of leads added one by one.
- gives status, priority, attempts, attempt_seq and custom_fields server defaults, so a COPY
  need not send them.
- makes the report counters' INSERT trigger count equal raw values before computing its keys,
  and turns deduplication off on ix_leads_dispatch (its keys end with the id: never equal).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFERENCES_DDL = r"""
CREATE FUNCTION leads_check_references() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  ref record;
BEGIN
  -- One pass over the statement's rows (an import's rows share one campaign and one job), then
  -- one look-up per distinct reference, locking it FOR KEY SHARE as a foreign key check does.
  FOR ref IN SELECT DISTINCT campaign_id, import_job_id FROM new_rows LOOP
    PERFORM 1 FROM campaigns WHERE id = ref.campaign_id FOR KEY SHARE;
    IF NOT FOUND THEN
      RAISE foreign_key_violation
        USING MESSAGE = format('leads refer to campaign %s, which does not exist', ref.campaign_id);
    END IF;
    IF ref.import_job_id IS NOT NULL THEN
      PERFORM 1 FROM import_jobs WHERE id = ref.import_job_id FOR KEY SHARE;
      IF NOT FOUND THEN
        RAISE foreign_key_violation
          USING MESSAGE = format('leads refer to import job %s, which does not exist', ref.import_job_id);
      END IF;
    END IF;
  END LOOP;
  RETURN NULL;
END
$fn$;

CREATE FUNCTION leads_check_row_references() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM 1 FROM campaigns WHERE id = NEW.campaign_id FOR KEY SHARE;
  IF NOT FOUND THEN
    RAISE foreign_key_violation USING MESSAGE = format('leads refer to campaign %s, which does not exist', NEW.campaign_id);
  END IF;
  IF NEW.import_job_id IS NOT NULL THEN
    PERFORM 1 FROM import_jobs WHERE id = NEW.import_job_id FOR KEY SHARE;
    IF NOT FOUND THEN
      RAISE foreign_key_violation
        USING MESSAGE = format('leads refer to import job %s, which does not exist', NEW.import_job_id);
    END IF;
  END IF;
  RETURN NULL;
END
$fn$;

CREATE FUNCTION leads_delete_with_campaign() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  DELETE FROM leads WHERE campaign_id IN (SELECT id FROM old_rows);
  RETURN NULL;
END
$fn$;

CREATE FUNCTION leads_forget_import_job() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE leads SET import_job_id = NULL WHERE import_job_id IN (SELECT id FROM old_rows);
  RETURN NULL;
END
$fn$;

CREATE FUNCTION leads_keep_referenced_key() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_TABLE_NAME = 'campaigns' AND EXISTS (SELECT 1 FROM leads WHERE campaign_id = OLD.id)
     OR TG_TABLE_NAME = 'import_jobs' AND EXISTS (SELECT 1 FROM leads WHERE import_job_id = OLD.id) THEN
    RAISE foreign_key_violation USING MESSAGE = format('%s %s is still referenced from leads', TG_TABLE_NAME, OLD.id);
  END IF;
  RETURN NULL;
END
$fn$;

CREATE TRIGGER leads_references_ins AFTER INSERT ON leads REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION leads_check_references();
-- Per row, but only for an UPDATE that changes a reference (none in the application does): the
-- pacer's and the webhooks' updates never pay for it.
CREATE TRIGGER leads_references_upd AFTER UPDATE OF campaign_id, import_job_id ON leads FOR EACH ROW
  WHEN (NEW.campaign_id IS DISTINCT FROM OLD.campaign_id OR NEW.import_job_id IS DISTINCT FROM OLD.import_job_id)
  EXECUTE FUNCTION leads_check_row_references();
CREATE TRIGGER leads_delete_with_campaign AFTER DELETE ON campaigns REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION leads_delete_with_campaign();
CREATE TRIGGER leads_forget_import_job AFTER DELETE ON import_jobs REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION leads_forget_import_job();
CREATE TRIGGER leads_keep_campaign_id AFTER UPDATE OF id ON campaigns
  FOR EACH ROW WHEN (OLD.id <> NEW.id) EXECUTE FUNCTION leads_keep_referenced_key();
CREATE TRIGGER leads_keep_import_job_id AFTER UPDATE OF id ON import_jobs
  FOR EACH ROW WHEN (OLD.id <> NEW.id) EXECUTE FUNCTION leads_keep_referenced_key();

CREATE FUNCTION lead_custom_fields(own jsonb, job integer, cells text[]) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
  SELECT CASE WHEN cells IS NULL THEN own ELSE own || coalesce((
    SELECT jsonb_object_agg(u.k, u.v)
    FROM import_jobs AS j, unnest(j.custom_keys, cells) AS u(k, v)
    WHERE j.id = job AND u.k IS NOT NULL AND u.v <> ''
  ), '{}'::jsonb) END
$fn$;
"""

# A frozen copy of dialer.reports.counters_ddl()'s campaign_counters_leads() at this revision: on
# INSERT it counts equal raw values before computing the keys (an import's rows share them), the
# same sums as 0004's. The downgrade keeps it: 0004's triggers call it unchanged.
COUNTERS_LEADS_DDL = r"""
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
    sum(r.n)::bigint AS n
  FROM (SELECT campaign_id, status, blocked_reason, next_attempt_at, updated_at, count(*) AS n FROM new_rows GROUP BY 1, 2, 3, 4, 5) AS r GROUP BY 1, 2, 3, 4, 5
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
"""

DROP_REFERENCES_DDL = r"""
DROP TRIGGER leads_references_ins ON leads;
DROP TRIGGER leads_references_upd ON leads;
DROP TRIGGER leads_delete_with_campaign ON campaigns;
DROP TRIGGER leads_forget_import_job ON import_jobs;
DROP TRIGGER leads_keep_campaign_id ON campaigns;
DROP TRIGGER leads_keep_import_job_id ON import_jobs;
DROP FUNCTION leads_check_references();
DROP FUNCTION leads_check_row_references();
DROP FUNCTION leads_delete_with_campaign();
DROP FUNCTION leads_forget_import_job();
DROP FUNCTION leads_keep_referenced_key();
DROP FUNCTION lead_custom_fields(jsonb, integer, text[]);
"""


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_index("ix_leads_phone_e164", table_name="leads")
    op.drop_constraint("uq_leads_campaign_id_phone_e164", "leads", type_="unique")
    op.create_unique_constraint(op.f("uq_leads_phone_e164_campaign_id"), "leads", ["phone_e164", "campaign_id"])
    op.drop_constraint("fk_leads_campaign_id_campaigns", "leads", type_="foreignkey")
    op.drop_constraint("fk_leads_import_job_id_import_jobs", "leads", type_="foreignkey")
    op.add_column("import_jobs", sa.Column("custom_keys", postgresql.ARRAY(sa.Text()), nullable=True))
    op.add_column("leads", sa.Column("custom_values", postgresql.ARRAY(sa.Text()), nullable=True))
    op.alter_column("leads", "status", server_default="pending")
    op.alter_column("leads", "priority", server_default="0")
    op.alter_column("leads", "attempts", server_default="0")
    op.alter_column("leads", "attempt_seq", server_default="0")
    op.alter_column("leads", "custom_fields", server_default=sa.text("'{}'::jsonb"))
    op.execute(REFERENCES_DDL)
    op.execute(COUNTERS_LEADS_DDL)
    # Its keys end with the id and never repeat: a deduplication pass on each page split is waste.
    op.execute("ALTER INDEX ix_leads_dispatch SET (deduplicate_items = off)")


def downgrade() -> None:
    """Downgrade schema."""
    # Imported custom fields go back into the JSON column before their compact form is dropped.
    op.execute(
        "UPDATE leads SET custom_fields = lead_custom_fields(custom_fields, import_job_id, custom_values)"
        " WHERE custom_values IS NOT NULL"
    )
    op.execute(DROP_REFERENCES_DDL)
    op.execute("ALTER INDEX ix_leads_dispatch RESET (deduplicate_items)")
    op.alter_column("leads", "custom_fields", server_default=None)
    op.alter_column("leads", "attempt_seq", server_default=None)
    op.alter_column("leads", "attempts", server_default=None)
    op.alter_column("leads", "priority", server_default=None)
    op.alter_column("leads", "status", server_default=None)
    op.drop_column("leads", "custom_values")
    op.drop_column("import_jobs", "custom_keys")
    op.create_foreign_key(
        op.f("fk_leads_import_job_id_import_jobs"),
        "leads",
        "import_jobs",
        ["import_job_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        op.f("fk_leads_campaign_id_campaigns"), "leads", "campaigns", ["campaign_id"], ["id"], ondelete="CASCADE"
    )
    op.drop_constraint(op.f("uq_leads_phone_e164_campaign_id"), "leads", type_="unique")
    op.create_unique_constraint(op.f("uq_leads_campaign_id_phone_e164"), "leads", ["campaign_id", "phone_e164"])
    op.create_index("ix_leads_phone_e164", "leads", ["phone_e164"], unique=False)

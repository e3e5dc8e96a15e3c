-- HustleXP production verification (queue step B063). Read-only; safe on production.
--
--   psql -X -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f scripts/verify-production.sql
--
-- Prints what it finds, then a final gate that RAISEs (psql exits non-zero) when any check
-- fails: schema_versions must hold every version this release ships, from 1.0.0 to the newest
-- (the list below, the same as sql/versions + sql/migrations; a test keeps them equal), and none
-- newer; at least 10 guard / immutable / requires / no_delete triggers and at least 18 public
-- tables must exist, and so must every named table and trigger below (the same lists as
-- `hustlexp db verify`, hustlexp/db/schema.py). A database that is behind: `hustlexp db migrate`.

\set ON_ERROR_STOP on
BEGIN TRANSACTION READ ONLY;

\echo '== schema versions (newest first)'
SELECT version, applied_at, applied_by, checksum
  FROM schema_versions
 ORDER BY string_to_array(version, '.')::int[] DESC;

\echo '== triggers named like guard / immutable / requires / no_delete (need >= 10)'
SELECT count(*) AS pattern_triggers
  FROM pg_trigger
 WHERE NOT tgisinternal
   AND (tgname LIKE '%guard%' OR tgname LIKE '%immutable%'
        OR tgname LIKE '%requires%' OR tgname LIKE '%no_delete%');

\echo '== public tables (need >= 18)'
SELECT count(*) AS public_tables
  FROM information_schema.tables
 WHERE table_schema = 'public' AND table_type = 'BASE TABLE';

\echo '== named tables'
SELECT expected.name AS table_name, to_regclass(format('public.%I', expected.name)) IS NOT NULL AS present
  FROM unnest(ARRAY[
         'users', 'tasks', 'escrows', 'proofs', 'proof_photos', 'xp_ledger', 'trust_ledger', 'badges',
         'disputes', 'processed_stripe_events', 'ai_events', 'ai_jobs', 'ai_proposals', 'ai_decisions',
         'evidence', 'admin_roles', 'admin_actions', 'schema_versions'
       ]) AS expected(name)
 ORDER BY present, table_name;

\echo '== named triggers'
SELECT expected.name AS trigger_name,
       EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgname = expected.name AND NOT t.tgisinternal) AS present
  FROM unnest(ARRAY[
         'task_terminal_guard', 'escrow_terminal_guard', 'escrow_amount_immutable',
         'xp_requires_released_escrow', 'xp_ledger_no_delete', 'badge_no_delete',
         'escrow_released_requires_completed_task', 'task_completed_requires_accepted_proof',
         'trust_tier_audit', 'admin_actions_no_delete'
       ]) AS expected(name)
 ORDER BY present, trigger_name;

\echo '== gate'
DO $gate$
DECLARE
    shipped text[] := ARRAY['1.0.0', '1.1.0', '1.2.0', '1.3.0', '1.4.0', '1.5.0', '1.6.0', '1.7.0', '1.8.0', '1.9.0', '1.10.0', '1.11.0', '1.12.0', '1.13.0'];  -- every schema version of this release, oldest first
    failures text[] := '{}';
    newest text;
    n integer;
    missing text;
BEGIN
    SELECT version INTO newest FROM schema_versions ORDER BY string_to_array(version, '.')::int[] DESC LIMIT 1;
    IF newest IS DISTINCT FROM shipped[cardinality(shipped)] THEN
        failures := failures || format('newest schema version is %s, expected %s', coalesce(newest, 'none'),
                                       shipped[cardinality(shipped)]);
    END IF;
    SELECT string_agg(v, ', ' ORDER BY string_to_array(v, '.')::int[]) INTO missing
      FROM unnest(shipped) AS v WHERE NOT EXISTS (SELECT 1 FROM schema_versions s WHERE s.version = v);
    IF missing IS NOT NULL THEN
        failures := failures || format('schema versions not recorded: %s', missing);
    END IF;

    SELECT count(*) INTO n FROM pg_trigger
     WHERE NOT tgisinternal
       AND (tgname LIKE '%guard%' OR tgname LIKE '%immutable%'
            OR tgname LIKE '%requires%' OR tgname LIKE '%no_delete%');
    IF n < 10 THEN
        failures := failures || format('%s guard/immutable/requires/no_delete triggers, need >= 10', n);
    END IF;

    SELECT count(*) INTO n FROM information_schema.tables
     WHERE table_schema = 'public' AND table_type = 'BASE TABLE';
    IF n < 18 THEN
        failures := failures || format('%s public tables, need >= 18', n);
    END IF;

    SELECT string_agg(name, ', ' ORDER BY name) INTO missing
      FROM unnest(ARRAY[
             'users', 'tasks', 'escrows', 'proofs', 'proof_photos', 'xp_ledger', 'trust_ledger', 'badges',
             'disputes', 'processed_stripe_events', 'ai_events', 'ai_jobs', 'ai_proposals', 'ai_decisions',
             'evidence', 'admin_roles', 'admin_actions', 'schema_versions'
           ]) AS expected(name)
     WHERE to_regclass(format('public.%I', name)) IS NULL;
    IF missing IS NOT NULL THEN
        failures := failures || format('missing tables: %s', missing);
    END IF;

    SELECT string_agg(name, ', ' ORDER BY name) INTO missing
      FROM unnest(ARRAY[
             'task_terminal_guard', 'escrow_terminal_guard', 'escrow_amount_immutable',
             'xp_requires_released_escrow', 'xp_ledger_no_delete', 'badge_no_delete',
             'escrow_released_requires_completed_task', 'task_completed_requires_accepted_proof',
             'trust_tier_audit', 'admin_actions_no_delete'
           ]) AS expected(name)
     WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgname = expected.name AND NOT t.tgisinternal);
    IF missing IS NOT NULL THEN
        failures := failures || format('missing triggers: %s', missing);
    END IF;

    IF cardinality(failures) > 0 THEN
        RAISE EXCEPTION 'verify-production: % check(s) failed: %', cardinality(failures),
            array_to_string(failures, '; ');
    END IF;
    RAISE NOTICE 'verify-production: every check passed';
END
$gate$;

ROLLBACK;

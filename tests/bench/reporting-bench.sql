-- reporting-bench.sql: :rows reports over two years and their tasks, with
-- the aggregates the inboxes would have built (what apply_report and
-- apply_task do, set-based). Run as the superuser by reporting-bench.sh.
SET search_path = reporting;
SELECT setseed(0.11);
CREATE TEMP TABLE g AS
SELECT i,
       (ARRAY['litter','graffiti','vandalism','lighting','vegetation','traffic',
              'sleeping_outdoors','drug_dealing','other'])[1 + floor(random() * 9)::int] AS category,
       (ARRAY['sergels-torg','klarakvarteren','centralstationen','kungstradgarden','hotorget',
              'sodra-johannes','odenplan','vasaparken','observatorielunden','sveavagen'])
           [1 + floor(random() * 10)::int] AS place,
       (ARRAY['trygg-app','polisen-norrmalm','stockholmshem','klara-skola','norrmalm-staff'])
           [1 + floor(random() * 5)::int] AS partner,
       timestamptz '2025-01-01 00:00+01' + random() * interval '698 days' AS at,
       random() < 0.4 AS night,
       random() AS r1, random() AS r2
  FROM generate_series(1, :rows) i;
INSERT INTO reports (report_id, partner, partner_role, category, zones, day, night, target_min,
                     reported_at)
SELECT 'bench-' || i, partner, 'resident_app', g.category, ARRAY['*', place], local_day(at), night,
       c.target_min, at
  FROM g JOIN categories c ON c.code = g.category;
INSERT INTO counts_day (day, zone, partner, category, night, n)
SELECT r.day, z, r.partner, r.category, r.night, count(*)
  FROM reports r, unnest(r.zones) z GROUP BY 1, 2, 3, 4, 5;
INSERT INTO counts_month (month, zone, partner, category, night, n)
SELECT date_trunc('month', day)::date, zone, partner, category, night, sum(n)
  FROM counts_day GROUP BY 1, 2, 3, 4, 5;
INSERT INTO counts_month (month, zone, partner, category, night, n)
SELECT date_trunc('month', day)::date, zone, '*', category, night, sum(n)
  FROM counts_day GROUP BY 1, 2, 3, 4, 5;
-- One task per report, acknowledged after about a target's fifth, done
-- after about its whole (log-normal spread); 2 % still open.
INSERT INTO tasks (task_id, report_id, category, place, unit, opened_at, acked_at, done_at, known,
                   partner, zones, day, ack_target_min, done_target_min, due_at, opened_counted,
                   ack_counted, done_counted)
SELECT 'task-' || g.i, 'bench-' || g.i, r.category, g.place,
       CASE WHEN r.category IN ('lighting', 'vegetation') THEN 'park-crew'
            WHEN r.category = 'drug_dealing' THEN 'police'
            ELSE 'cleaning-' || (CASE WHEN g.i % 2 = 0 THEN 'north' ELSE 'south' END) END,
       r.reported_at,
       r.reported_at + make_interval(mins => greatest(1, r.target_min / 5 * exp(g.r1 * 2 - 1))::int),
       CASE WHEN g.r2 > 0.02 THEN r.reported_at
            + make_interval(mins => greatest(2, r.target_min * exp(g.r2 * 2 - 1))::int) END,
       true, r.partner, r.zones, r.day,
       CASE WHEN r.target_min = 0 THEN 10 ELSE r.target_min END,
       CASE WHEN r.target_min = 0 THEN 60 ELSE r.target_min END,
       r.reported_at + make_interval(mins => CASE WHEN r.target_min = 0 THEN 60 ELSE r.target_min END),
       true, true, g.r2 > 0.02
  FROM g JOIN reports r ON r.report_id = 'bench-' || g.i;
INSERT INTO open_tasks (task_id, due_at, unit, category, partner, zones)
SELECT task_id, due_at, unit, category, partner, zones FROM tasks
 WHERE done_at IS NULL AND declined_at IS NULL;
INSERT INTO response_day (day, zone, unit, category, kind, bucket, n, within)
SELECT t.day, z, t.unit, t.category, k.kind,
       bucket_of(extract(epoch FROM k.at - t.opened_at) / 60), count(*),
       count(*) FILTER (WHERE extract(epoch FROM k.at - t.opened_at) / 60 <= k.target)
  FROM tasks t, unnest(t.zones) z,
       LATERAL (VALUES ('a', t.acked_at, t.ack_target_min), ('d', t.done_at, t.done_target_min))
           k(kind, at, target)
 WHERE k.at IS NOT NULL
 GROUP BY 1, 2, 3, 4, 5, 6;
INSERT INTO response_month (month, zone, unit, category, kind, bucket, n, within)
SELECT date_trunc('month', day)::date, zone, unit, category, kind, bucket, sum(n), sum(within)
  FROM response_day GROUP BY 1, 2, 3, 4, 5, 6;
ANALYZE;

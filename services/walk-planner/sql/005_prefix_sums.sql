-- walk-planner: running totals, so that hotspots over a window of any
-- length read about four rows per place and category, however many days and
-- reports the window spans (issue 10: p99 under 100 ms at a million
-- reports; docs/walk-planner.md, "Speed").
--
-- Besides its own figures, each row of
--   agg_weeks    (a place, category and ISO week with reports) holds the
--                running total of every week of its place and category up
--                to and including this one (run_*);
--   agg_reports  (a place, category and local day with reports) holds the
--                running total of the days of its ISO week up to and
--                including this one (wk_*).
-- A total is reports, after dark, severity sum and days with reports (for
-- recurrence). "Before x" (every local day < x) is then
--   agg_weeks' last row before x's week + agg_reports' last row of x's week
--   before x,
-- and a window [from, to) is before(to) - before(from).
--
-- "Last row before" is kept as a span: each row holds until the next row of
-- its place and category (agg_weeks: (week, next week with reports], open
-- while there is none; agg_reports: (day, next day with reports in the
-- week, or the week's Sunday]). The rows that make up "before x" are those
-- whose span holds x's week or x: one GiST lookup per table returns them
-- for every place and category at once. (A lookup per place and category
-- costs more than adding up the weeks it replaces.)
--
-- The cost of keeping them (report_apply): a report adds to its day's and
-- its week's rows, to the later days of its week (at most six) and to every
-- later week of its place and category that has reports; a new day or week
-- also ends the span of the one before it. A live report is for today, so
-- nothing is later; a late or out-of-order one (a history import) adds to
-- one row per later week: at most 52 for a year of history after it.

ALTER TABLE agg_reports
    ADD COLUMN upto date, -- the next day with reports in the week; NULL: none
    ADD COLUMN wk_reports bigint NOT NULL DEFAULT 0,
    ADD COLUMN wk_night bigint NOT NULL DEFAULT 0,
    ADD COLUMN wk_severity bigint NOT NULL DEFAULT 0,
    ADD COLUMN wk_days bigint NOT NULL DEFAULT 0;
ALTER TABLE agg_weeks
    ADD COLUMN upto date, -- the next week with reports; NULL: none (yet)
    ADD COLUMN run_reports bigint NOT NULL DEFAULT 0,
    ADD COLUMN run_night bigint NOT NULL DEFAULT 0,
    ADD COLUMN run_severity bigint NOT NULL DEFAULT 0,
    ADD COLUMN run_days bigint NOT NULL DEFAULT 0;
-- read by the whole-week sums of 003_api.sql's hotspot_rows, no more
DROP INDEX agg_reports_day;
DROP INDEX agg_weeks_week;

CREATE FUNCTION week_of(d date) RETURNS date LANGUAGE sql IMMUTABLE AS $$
    SELECT d - (extract(isodow FROM d)::int - 1)
$$;

-- Recomputes agg_weeks, every running total and every span from the days'
-- own figures, set-based: what report_apply keeps one report at a time
-- (test_walk_planner.py holds the two equal). Rows are written in time
-- order, as the inbox adds them, so the rows a window reads share pages.
-- For this migration and for filling the aggregates in bulk
-- (tests/bench/walks-bench.sh).
CREATE FUNCTION agg_rebuild() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE agg_days ON COMMIT DROP AS
    SELECT place, category, day, reports, night, severity_sum FROM agg_reports;
    TRUNCATE agg_reports, agg_weeks;
    INSERT INTO agg_reports (place, category, day, reports, night, severity_sum, upto,
        wk_reports, wk_night, wk_severity, wk_days)
    SELECT place, category, day, reports, night, severity_sum, lead(day) OVER w,
           sum(reports) OVER w, sum(night) OVER w, sum(severity_sum) OVER w, count(*) OVER w
      FROM agg_days
    WINDOW w AS (PARTITION BY place, category, week_of(day) ORDER BY day)
     ORDER BY day, place, category;
    INSERT INTO agg_weeks (place, category, week, reports, night, severity_sum, days, upto,
        run_reports, run_night, run_severity, run_days)
    SELECT place, category, week, r, n, s, d, lead(week) OVER w, sum(r) OVER w, sum(n) OVER w,
           sum(s) OVER w, sum(d) OVER w
      FROM (SELECT place, category, week_of(day) AS week, sum(reports) AS r, sum(night) AS n,
                   sum(severity_sum) AS s, count(*) AS d
              FROM agg_days GROUP BY 1, 2, 3) x
    WINDOW w AS (PARTITION BY place, category ORDER BY week)
     ORDER BY week, place, category;
    DROP TABLE agg_days;
END $$;

SELECT agg_rebuild();

ALTER TABLE agg_reports ADD COLUMN span daterange
    GENERATED ALWAYS AS (daterange(day, coalesce(upto, week_of(day) + 6), '(]')) STORED;
ALTER TABLE agg_weeks
    ADD COLUMN span daterange GENERATED ALWAYS AS (daterange(week, upto, '(]')) STORED;
CREATE INDEX agg_reports_span ON agg_reports USING gist (span);
CREATE INDEX agg_weeks_span ON agg_weeks USING gist (span);

-- One report's effect: +1 (and its night and severity) for each of its
-- places (or '' without one), category and local day, in its day's and
-- its week's rows and in the running totals after them (see the top of
-- this file). upto tells whether any row is after them: for a live report
-- (today) there is none, so it updates two rows, as before the running
-- totals; the first report of a day or week also reads the row before it.
CREATE OR REPLACE FUNCTION report_apply(p_places text[], p_category text, p_severity int,
    p_night boolean, p_at_us bigint, p_lat float8, p_long float8) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    d date := local_day(to_timestamp(p_at_us / 1e6));
    wk date := week_of(d);
    n int := p_night::int;
    sev int := p_severity;
    pl text;
    pd agg_reports; -- the day before it in its week
    pw agg_weeks;   -- the week before it
    nxt date;      -- the next day (in the week) or week with reports
    new_day int;   -- 1: the first report of its place, category and day
BEGIN
    IF coalesce(array_length(p_places, 1), 0) = 0 THEN
        p_places := ARRAY[''];
    END IF;
    FOREACH pl IN ARRAY p_places LOOP
        UPDATE agg_reports SET reports = reports + 1, night = night + n,
            severity_sum = severity_sum + sev, wk_reports = wk_reports + 1,
            wk_night = wk_night + n, wk_severity = wk_severity + sev
         WHERE place = pl AND category = p_category AND day = d RETURNING upto INTO nxt;
        new_day := (NOT FOUND)::int;
        IF new_day = 1 THEN
            -- A new day takes the totals and the span end of its week's day
            -- before it (whose span now ends at d), else holds until the
            -- week's next day with reports.
            SELECT * INTO pd FROM agg_reports
             WHERE place = pl AND category = p_category AND day >= wk AND day < d
             ORDER BY day DESC LIMIT 1;
            nxt := CASE WHEN pd.day IS NOT NULL THEN pd.upto ELSE (SELECT min(day)
                FROM agg_reports WHERE place = pl AND category = p_category AND day > d
                 AND day < wk + 7) END;
            -- ON CONFLICT: a replica applying the same batch got here first;
            -- this transaction then fails at inbox_advance and rolls back.
            INSERT INTO agg_reports (place, category, day, reports, night, severity_sum, upto,
                wk_reports, wk_night, wk_severity, wk_days)
            VALUES (pl, p_category, d, 1, n, sev, nxt, coalesce(pd.wk_reports, 0) + 1,
                coalesce(pd.wk_night, 0) + n, coalesce(pd.wk_severity, 0) + sev,
                coalesce(pd.wk_days, 0) + 1)
            ON CONFLICT DO NOTHING;
            UPDATE agg_reports SET upto = d
             WHERE place = pl AND category = p_category AND day = pd.day;
        END IF;
        IF nxt IS NOT NULL THEN
            UPDATE agg_reports SET wk_reports = wk_reports + 1, wk_night = wk_night + n,
                wk_severity = wk_severity + sev, wk_days = wk_days + new_day
             WHERE place = pl AND category = p_category AND day >= nxt AND day < wk + 7;
        END IF;
        -- The week likewise, and every later week.
        UPDATE agg_weeks SET reports = reports + 1, night = night + n,
            severity_sum = severity_sum + sev, days = days + new_day,
            run_reports = run_reports + 1, run_night = run_night + n,
            run_severity = run_severity + sev, run_days = run_days + new_day
         WHERE place = pl AND category = p_category AND week = wk RETURNING upto INTO nxt;
        IF NOT FOUND THEN
            SELECT * INTO pw FROM agg_weeks
             WHERE place = pl AND category = p_category AND week < wk
             ORDER BY week DESC LIMIT 1;
            nxt := CASE WHEN pw.week IS NOT NULL THEN pw.upto ELSE (SELECT min(week)
                FROM agg_weeks WHERE place = pl AND category = p_category AND week > wk) END;
            INSERT INTO agg_weeks (place, category, week, reports, night, severity_sum, days,
                upto, run_reports, run_night, run_severity, run_days)
            VALUES (pl, p_category, wk, 1, n, sev, 1, nxt, coalesce(pw.run_reports, 0) + 1,
                coalesce(pw.run_night, 0) + n, coalesce(pw.run_severity, 0) + sev,
                coalesce(pw.run_days, 0) + 1)
            ON CONFLICT DO NOTHING;
            UPDATE agg_weeks SET upto = wk
             WHERE place = pl AND category = p_category AND week = pw.week;
        END IF;
        IF nxt IS NOT NULL THEN
            UPDATE agg_weeks SET run_reports = run_reports + 1, run_night = run_night + n,
                run_severity = run_severity + sev, run_days = run_days + new_day
             WHERE place = pl AND category = p_category AND week >= nxt;
        END IF;
        IF pl <> '' THEN
            -- A place only named in reports until PlaceDefined or the operator defines it.
            INSERT INTO places (slug, name, lat, long, source) VALUES (pl, pl, p_lat, p_long, 'report')
            ON CONFLICT (slug) DO UPDATE SET lat = coalesce(places.lat, excluded.lat),
                long = coalesce(places.long, excluded.long)
            WHERE places.lat IS NULL AND excluded.lat IS NOT NULL;
            UPDATE places SET area = area_of(lat, long)
             WHERE slug = pl AND area IS NULL AND lat IS NOT NULL;
        END IF;
    END LOOP;
END $$;

-- The rows that hold every place's and category's totals over the local
-- days before x: up to two per place and category, to be added up.
CREATE FUNCTION agg_before(x date) RETURNS TABLE (place text, category text, reports bigint,
    night bigint, severity bigint, days bigint)
LANGUAGE sql STABLE AS $$
    SELECT place, category, run_reports, run_night, run_severity, run_days
      FROM agg_weeks WHERE span @> week_of(x)
    UNION ALL
    SELECT place, category, wk_reports, wk_night, wk_severity, wk_days
      FROM agg_reports WHERE span @> x
$$;

-- Hotspot rows as in 003_api.sql, but each place's and category's totals
-- over the window are agg_before(to) - agg_before(from).
CREATE OR REPLACE FUNCTION hotspot_rows(p_from date, p_to date, p_area text)
RETURNS TABLE (place text, name text, lat float8, long float8, reports bigint, night bigint,
    severity_sum bigint, repeat_reports bigint, reopened bigint, top_category text,
    top_count bigint, lighting bigint, area text, score float8)
LANGUAGE sql STABLE AS $$
    WITH r AS (
        SELECT x.place, x.category, sum(x.reports) AS n, sum(x.night) AS nn,
               sum(x.severity) AS s, sum(x.days) AS days
          FROM (SELECT * FROM agg_before(p_to)
                UNION ALL
                SELECT b.place, b.category, -b.reports, -b.night, -b.severity, -b.days
                  FROM agg_before(p_from) b) x
         WHERE x.place <> ''
         GROUP BY x.place, x.category HAVING sum(x.reports) > 0),
    p AS (SELECT r.place, sum(r.n) AS reports, sum(r.nn) AS night, sum(r.s) AS sev,
                 sum(r.days - 1) AS repeats,
                 coalesce(sum(r.n) FILTER (WHERE r.category = 'lighting'), 0) AS lighting
            FROM r GROUP BY r.place),
    top AS (SELECT DISTINCT ON (r.place) r.place, r.category, r.n FROM r
             ORDER BY r.place, r.n DESC, r.category),
    t AS (SELECT g.place, sum(g.reopened) AS reopened FROM agg_tasks g
           WHERE g.day >= p_from AND g.day < p_to AND g.reopened > 0 GROUP BY g.place)
    SELECT p.place, pl.name, pl.lat, pl.long, p.reports::bigint, p.night::bigint, p.sev::bigint,
           p.repeats::bigint, coalesce(t.reopened, 0)::bigint, top.category, top.n::bigint,
           p.lighting::bigint, pl.area,
           round((p.sev / 3.0 + 0.5 * p.repeats + 2 * coalesce(t.reopened, 0))::numeric, 2)::float8
      FROM p JOIN places pl ON pl.slug = p.place AND NOT pl.removed AND NOT pl.container
      JOIN top ON top.place = p.place
      LEFT JOIN t ON t.place = p.place
     WHERE p_area IS NULL OR p_area IN ('', 'district') OR pl.slug = p_area OR pl.area = p_area
$$;

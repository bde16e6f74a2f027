-- reporting (issue 11): the situation picture, kept as aggregates that the
-- inbox apply transactions maintain, so that no figure scans raw events.
--
-- Zones. Every report counts once in zone '*' (the district), once in each
-- place it lies in (the place's slug) and once in each survey area its
-- position lies in ('survey:<slug>'; without a position, the survey areas
-- holding the centroid of one of its places).
--
-- Counts live twice, per local day (Europe/Stockholm) and per month, keyed
-- by zone, partner, category and day or night (month rows also for all
-- partners, partner '*'); a period sums the month rows of its whole months
-- and the day rows of its ragged edges (counts_in()). Response times: one row per task (tasks) and a histogram
-- of minutes in log-spaced buckets (response_day, response_month), from
-- which medians and 90th percentiles are read (bucket_of()).

CREATE TABLE focus_areas (
    code text PRIMARY KEY,
    name text NOT NULL
);
INSERT INTO focus_areas VALUES
 ('physical_environment', 'Physical environment'),
 ('traffic_safety', 'Traffic safety'),
 ('social_vulnerability', 'Social vulnerability'),
 ('crime', 'Crime'),
 ('schools', 'Schools'),
 ('other', 'Other');

-- The categories as intake seeds them; an unknown code arriving in an event
-- is added with what the event says.
CREATE TABLE categories (
    code       text PRIMARY KEY,
    name       text NOT NULL,
    focus_area text NOT NULL,
    sensitive  boolean NOT NULL,
    target_min integer NOT NULL
);
INSERT INTO categories VALUES
 ('litter', 'Litter', 'physical_environment', false, 1440),
 ('graffiti', 'Graffiti', 'physical_environment', false, 1440),
 ('graffiti_offensive', 'Offensive graffiti', 'physical_environment', false, 0),
 ('vandalism', 'Vandalism', 'physical_environment', false, 2880),
 ('lighting', 'Broken lighting', 'physical_environment', false, 4320),
 ('vegetation', 'Overgrown vegetation', 'physical_environment', false, 10080),
 ('traffic', 'Traffic hazard', 'traffic_safety', false, 1440),
 ('sleeping_outdoors', 'Sleeping outdoors', 'social_vulnerability', false, 240),
 ('drug_dealing', 'Drug dealing', 'crime', true, 60),
 ('school_incident', 'School incident', 'schools', true, 240),
 ('youth_at_risk', 'Youth at risk', 'social_vulnerability', true, 60),
 ('vulnerable_victim', 'Vulnerable victim', 'social_vulnerability', true, 0),
 ('other', 'Other', 'other', false, 10080);

-- Places (PlaceDefined, or `trygg-reporting admin places load`). The
-- centroid is the mean of the outer ring's vertices; the box speeds up
-- point-in-polygon tests.
CREATE TABLE places (
    slug       text PRIMARY KEY,
    name       text NOT NULL,
    kind       text NOT NULL DEFAULT 'place' CHECK (kind IN ('place', 'district')),
    geometry   jsonb NOT NULL,
    c_lat      double precision,
    c_lon      double precision,
    removed    boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE survey_areas (
    slug     text PRIMARY KEY,
    name     text NOT NULL,
    geometry jsonb NOT NULL,
    min_lat  double precision, min_lon double precision,
    max_lat  double precision, max_lon double precision
);

-- Which places' centroids lie in which survey area (refreshed on load).
CREATE TABLE survey_area_places (
    area  text NOT NULL,
    place text NOT NULL,
    PRIMARY KEY (area, place)
);

CREATE TABLE survey_figures (
    survey       text NOT NULL,
    year         integer NOT NULL,
    area         text NOT NULL,
    indicator    text NOT NULL,
    value        double precision NOT NULL,
    unit         text NOT NULL,
    respondents  integer NOT NULL DEFAULT 0,
    illustrative boolean NOT NULL DEFAULT false,
    source       text NOT NULL DEFAULT '',
    PRIMARY KEY (survey, year, area, indicator)
);

-- One row per report: what later task events need to know about it (its
-- zones, partner and target). Figures never scan it.
CREATE TABLE reports (
    report_id    text PRIMARY KEY,
    partner      text NOT NULL,
    partner_role text NOT NULL,
    category     text NOT NULL,
    zones        text[] NOT NULL,
    day          date NOT NULL,
    night        boolean NOT NULL,
    target_min   integer NOT NULL,
    reported_at  timestamptz NOT NULL,
    imported     boolean NOT NULL DEFAULT false
);

CREATE TABLE counts_day (
    day      date NOT NULL,
    zone     text NOT NULL,
    partner  text NOT NULL,
    category text NOT NULL,
    night    boolean NOT NULL,
    n        bigint NOT NULL DEFAULT 0,
    repeats  bigint NOT NULL DEFAULT 0, -- reports that joined an open task
    reopened bigint NOT NULL DEFAULT 0, -- tasks opened within 30 days of a completed one
    PRIMARY KEY (zone, day, partner, category, night)
);
CREATE TABLE counts_month (LIKE counts_day INCLUDING ALL);
ALTER TABLE counts_month RENAME COLUMN day TO month;

-- One row per task (notifier's task events). The report fields are filled
-- when both the task's opening report and the event are known, whichever
-- stream delivers first; the *_counted flags say what has gone into the
-- aggregates.
CREATE TABLE tasks (
    task_id         text PRIMARY KEY,
    report_id       text NOT NULL,
    category        text NOT NULL,
    place           text NOT NULL DEFAULT '',
    unit            text NOT NULL DEFAULT '',
    opened_at       timestamptz NOT NULL,
    acked_at        timestamptz,
    done_at         timestamptz,
    declined_at     timestamptz,
    declined_owner  text,
    declined_reason text,
    escalated_at    timestamptz,
    escalations     integer NOT NULL DEFAULT 0,
    reopened        boolean NOT NULL DEFAULT false,
    -- from the report
    known           boolean NOT NULL DEFAULT false,
    partner         text,
    zones           text[],
    day             date,
    ack_target_min  integer,
    done_target_min integer,
    due_at          timestamptz,
    opened_counted  boolean NOT NULL DEFAULT false,
    ack_counted     boolean NOT NULL DEFAULT false,
    done_counted    boolean NOT NULL DEFAULT false
);
CREATE INDEX tasks_report ON tasks (report_id);

-- The tasks still open whose report is known: what overdue_now counts,
-- kept small (a row leaves when its task is done or declined) so that
-- "overdue now" never walks the history of tasks.
CREATE TABLE open_tasks (
    task_id  text PRIMARY KEY,
    due_at   timestamptz NOT NULL,
    unit     text NOT NULL,
    category text NOT NULL,
    partner  text NOT NULL,
    zones    text[] NOT NULL
);
CREATE INDEX tasks_partner ON tasks (partner, day);

-- Reports that joined a task (TaskJoined), counted as repeats once known.
CREATE TABLE task_joins (
    report_id text PRIMARY KEY,
    task_id   text NOT NULL,
    counted   boolean NOT NULL DEFAULT false
);

-- When a place and category last had a task completed (recurrence).
CREATE TABLE last_done (
    place    text NOT NULL,
    category text NOT NULL,
    at       timestamptz NOT NULL,
    PRIMARY KEY (place, category)
);

CREATE TABLE response_day (
    day      date NOT NULL,
    zone     text NOT NULL,
    unit     text NOT NULL,
    category text NOT NULL,
    kind     char(1) NOT NULL CHECK (kind IN ('a', 'd')), -- acknowledged, done
    bucket   smallint NOT NULL,
    n        bigint NOT NULL DEFAULT 0,
    within   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (zone, day, kind, unit, category, bucket)
);
CREATE TABLE response_month (LIKE response_day INCLUDING ALL);
ALTER TABLE response_month RENAME COLUMN day TO month;

-- Walks and findings: the latest version of each.
CREATE TABLE walks (
    walk_id    text PRIMARY KEY,
    version    bigint NOT NULL,
    area       text NOT NULL,
    title      text NOT NULL,
    status     text NOT NULL,
    starts_at  timestamptz,
    after_dark boolean NOT NULL DEFAULT false,
    places     text[] NOT NULL DEFAULT '{}'
);
CREATE TABLE findings (
    finding_id     text PRIMARY KEY,
    version        bigint NOT NULL,
    walk_id        text NOT NULL,
    place          text NOT NULL,
    category       text NOT NULL,
    status         text NOT NULL,
    responsible    text NOT NULL DEFAULT '',
    deadline       timestamptz,
    declined_owner text NOT NULL DEFAULT '',
    recorded_at    timestamptz NOT NULL,
    done_at        timestamptz
);
CREATE INDEX findings_recorded ON findings (recorded_at);

-- Access keys (hashes only).
CREATE TABLE keys (
    key_hash   text PRIMARY KEY,
    name       text NOT NULL,
    role       text NOT NULL CHECK (role IN ('staff', 'police', 'partner')),
    partner    text,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CHECK ((role = 'partner') = (partner IS NOT NULL))
);

-- Commentary per period, area and section ("summary", "focus_area:X",
-- "place:Y"), beside the figures.
CREATE TABLE comments (
    period_from date NOT NULL,
    period_to   date NOT NULL,
    area        text NOT NULL,
    section     text NOT NULL,
    text        text NOT NULL,
    author      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (period_from, period_to, area, section)
);

-- Published versions: figures and text frozen together. Immutable.
CREATE TABLE versions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    period_kind     text NOT NULL,
    period_from     date NOT NULL,
    period_to       date NOT NULL,
    area            text NOT NULL,
    published_by    text NOT NULL,
    published_at    timestamptz NOT NULL DEFAULT now(),
    document        jsonb NOT NULL, -- as staff and police see it
    public_document jsonb NOT NULL  -- suppressed, for everyone else
);
CREATE FUNCTION versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'published versions are immutable' USING ERRCODE = 'RPIMM';
END $$;
CREATE TRIGGER versions_no_update BEFORE UPDATE OR DELETE ON versions
    FOR EACH ROW EXECUTE FUNCTION versions_immutable();
CREATE TRIGGER versions_no_truncate BEFORE TRUNCATE ON versions
    FOR EACH STATEMENT EXECUTE FUNCTION versions_immutable();

-- ---- geometry (WGS84 degrees, planar at district scale) ----

-- Is (lat, lon) inside a GeoJSON Polygon or MultiPolygon (even-odd rule
-- over every ring, so holes work)?
CREATE FUNCTION geo_contains(g jsonb, lat double precision, lon double precision)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    polys jsonb;
    poly jsonb;
    ring jsonb;
    inside boolean := false;
    n int; i int; j int;
    xi double precision; yi double precision; xj double precision; yj double precision;
BEGIN
    IF g->>'type' = 'Polygon' THEN
        polys := jsonb_build_array(g->'coordinates');
    ELSIF g->>'type' = 'MultiPolygon' THEN
        polys := g->'coordinates';
    ELSE
        RETURN false;
    END IF;
    FOR poly IN SELECT * FROM jsonb_array_elements(polys) LOOP
        FOR ring IN SELECT * FROM jsonb_array_elements(poly) LOOP
            n := jsonb_array_length(ring);
            j := n - 1;
            FOR i IN 0 .. n - 1 LOOP
                xi := (ring->i->>0)::float8; yi := (ring->i->>1)::float8;
                xj := (ring->j->>0)::float8; yj := (ring->j->>1)::float8;
                IF ((yi > lat) <> (yj > lat)) AND
                   (lon < (xj - xi) * (lat - yi) / (yj - yi) + xi) THEN
                    inside := NOT inside;
                END IF;
                j := i;
            END LOOP;
        END LOOP;
    END LOOP;
    RETURN inside;
END $$;

-- The outer ring's vertices (of the first polygon) as (lat, lon) rows.
CREATE FUNCTION geo_outer(g jsonb) RETURNS TABLE (lat double precision, lon double precision)
LANGUAGE sql IMMUTABLE AS $$
    SELECT (p->>1)::float8, (p->>0)::float8
      FROM jsonb_array_elements(CASE g->>'type' WHEN 'Polygon' THEN g->'coordinates'->0
                                                ELSE g->'coordinates'->0->0 END) p
$$;

-- Every vertex of a Polygon or MultiPolygon.
CREATE FUNCTION geo_points(g jsonb) RETURNS TABLE (lat double precision, lon double precision)
LANGUAGE sql IMMUTABLE AS $$
    SELECT (p->>1)::float8, (p->>0)::float8
      FROM jsonb_array_elements(CASE g->>'type' WHEN 'Polygon' THEN jsonb_build_array(g->'coordinates')
                                                WHEN 'MultiPolygon' THEN g->'coordinates'
                                                ELSE '[]' END) poly,
           jsonb_array_elements(poly) ring, jsonb_array_elements(ring) p
$$;

CREATE FUNCTION place_define(p_slug text, p_name text, p_kind text, p_geom jsonb,
                             p_removed boolean) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO places (slug, name, kind, geometry, c_lat, c_lon, removed, updated_at)
    SELECT p_slug, p_name, p_kind, p_geom, avg(lat), avg(lon), p_removed, now()
      FROM geo_outer(p_geom)
    ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
        geometry = EXCLUDED.geometry, c_lat = EXCLUDED.c_lat, c_lon = EXCLUDED.c_lon,
        removed = EXCLUDED.removed, updated_at = now();
    PERFORM survey_membership_refresh();
END $$;

CREATE FUNCTION survey_membership_refresh() RETURNS void LANGUAGE sql AS $$
    DELETE FROM survey_area_places;
    INSERT INTO survey_area_places (area, place)
    SELECT a.slug, p.slug FROM survey_areas a JOIN places p
        ON NOT p.removed AND p.kind = 'place' AND p.c_lat IS NOT NULL
       AND geo_contains(a.geometry, p.c_lat, p.c_lon);
$$;

-- ---- applying events (called from the inboxes; see ingest.c) ----

CREATE FUNCTION local_day(t timestamptz) RETURNS date LANGUAGE sql STABLE AS $$
    SELECT (t AT TIME ZONE 'Europe/Stockholm')::date
$$;

-- Minutes in log-spaced buckets: 0 for under a minute, else
-- 1 + floor(ln(minutes) / ln(1.1)), so a bucket spans a factor of 1.1 and
-- its geometric middle (bucket_mid) is within 5 % of every value in it.
CREATE FUNCTION bucket_of(minutes double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN minutes < 1 THEN 0
                ELSE 1 + floor(ln(minutes) / ln(1.1))::int END::smallint
$$;
CREATE FUNCTION bucket_mid(b int) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN b <= 0 THEN 0 ELSE power(1.1, b - 0.5) END
$$;

-- Adds to the counts of one report's zones (n, repeats or reopened).
-- The delta is staged in count_deltas and folded into counts_day and
-- counts_month once per inbox batch, by the trigger on inbox_cursor that
-- the batch's last statement (inbox_advance) fires, in the same
-- transaction: the day's few hot rows are updated once per batch instead
-- of once per report (each update of a row already updated in the same
-- transaction walks its chain of versions, which made a batch quadratic).
CREATE TABLE count_deltas (
    day      date NOT NULL,
    zones    text[] NOT NULL,
    partner  text NOT NULL,
    category text NOT NULL,
    night    boolean NOT NULL,
    n        integer NOT NULL,
    repeats  integer NOT NULL,
    reopened integer NOT NULL
);

CREATE FUNCTION count_add(p_day date, p_zones text[], p_partner text, p_category text,
                          p_night boolean, dn bigint, dr bigint, dro bigint)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO count_deltas VALUES (p_day, p_zones, p_partner, p_category, p_night, dn, dr, dro);
$$;

CREATE FUNCTION count_flush() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH d AS (DELETE FROM count_deltas RETURNING *),
    z AS (SELECT d.day, zone, d.partner, d.category, d.night, sum(d.n) n, sum(d.repeats) r,
                 sum(d.reopened) ro
            FROM d, unnest(d.zones) zone GROUP BY 1, 2, 3, 4, 5),
    a AS (INSERT INTO counts_day AS c (day, zone, partner, category, night, n, repeats, reopened)
          SELECT * FROM z
          ON CONFLICT (zone, day, partner, category, night) DO UPDATE
             SET n = c.n + EXCLUDED.n, repeats = c.repeats + EXCLUDED.repeats,
                 reopened = c.reopened + EXCLUDED.reopened)
    -- Month rows per partner and for all partners ('*'), so that a year of
    -- the district reads a few thousand rows whatever the partners.
    INSERT INTO counts_month AS c (month, zone, partner, category, night, n, repeats, reopened)
    SELECT date_trunc('month', z.day)::date, z.zone, pa, z.category, z.night, sum(z.n), sum(z.r),
           sum(z.ro)
      FROM z, unnest(ARRAY[z.partner, '*']) pa GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (zone, month, partner, category, night) DO UPDATE
       SET n = c.n + EXCLUDED.n, repeats = c.repeats + EXCLUDED.repeats,
           reopened = c.reopened + EXCLUDED.reopened;
    RETURN NULL;
END $$;
CREATE TRIGGER count_flush_on_cursor AFTER UPDATE ON inbox_cursor
    FOR EACH STATEMENT EXECUTE FUNCTION count_flush();
-- An operator's re-apply of a set-aside event deletes its inbox_failed row.
CREATE TRIGGER count_flush_on_retry AFTER DELETE ON inbox_failed
    FOR EACH STATEMENT EXECUTE FUNCTION count_flush();

CREATE FUNCTION response_add(p_day date, p_zones text[], p_unit text, p_category text,
                             p_kind char, p_minutes double precision, p_target int)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO response_day AS r (day, zone, unit, category, kind, bucket, n, within)
    SELECT p_day, z, p_unit, p_category, p_kind, bucket_of(p_minutes), 1,
           (p_minutes <= p_target)::int FROM unnest(p_zones) z
    ON CONFLICT (zone, day, kind, unit, category, bucket) DO UPDATE
       SET n = r.n + 1, within = r.within + EXCLUDED.within;
    INSERT INTO response_month AS r (month, zone, unit, category, kind, bucket, n, within)
    SELECT date_trunc('month', p_day)::date, z, p_unit, p_category, p_kind,
           bucket_of(p_minutes), 1, (p_minutes <= p_target)::int FROM unnest(p_zones) z
    ON CONFLICT (zone, month, kind, unit, category, bucket) DO UPDATE
       SET n = r.n + 1, within = r.within + EXCLUDED.within;
$$;

-- Puts into the aggregates what has become countable about a task: its
-- report known, then (once each) its opening, acknowledgement, completion.
CREATE FUNCTION task_settle(p_task text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t tasks;
    r reports;
BEGIN
    SELECT * INTO t FROM tasks WHERE task_id = p_task FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF NOT t.known THEN
        SELECT * INTO r FROM reports WHERE report_id = t.report_id;
        IF NOT FOUND THEN
            RETURN; -- a finding's task, or the report is still on its way
        END IF;
        t.known := true;
        t.partner := r.partner;
        t.zones := r.zones;
        t.day := r.day;
        -- "at once" (0): acknowledged within 10 minutes, done within an hour,
        -- as the notifier's routing has it.
        t.ack_target_min := CASE WHEN r.target_min = 0 THEN 10 ELSE r.target_min END;
        t.done_target_min := CASE WHEN r.target_min = 0 THEN 60 ELSE r.target_min END;
        t.due_at := t.opened_at + make_interval(mins => t.done_target_min);
        IF t.category = '' THEN
            t.category := r.category;
        END IF;
    END IF;
    IF NOT t.opened_counted AND t.reopened THEN
        PERFORM count_add(t.day, t.zones, t.partner, t.category,
                          (SELECT night FROM reports WHERE report_id = t.report_id), 0, 0, 1);
    END IF;
    t.opened_counted := true;
    IF NOT t.ack_counted AND t.acked_at IS NOT NULL THEN
        PERFORM response_add(t.day, t.zones, t.unit, t.category, 'a',
            extract(epoch FROM t.acked_at - t.opened_at) / 60, t.ack_target_min);
        t.ack_counted := true;
    END IF;
    IF NOT t.done_counted AND t.done_at IS NOT NULL THEN
        PERFORM response_add(t.day, t.zones, t.unit, t.category, 'd',
            extract(epoch FROM t.done_at - t.opened_at) / 60, t.done_target_min);
        t.done_counted := true;
    END IF;
    IF t.done_at IS NULL AND t.declined_at IS NULL THEN
        INSERT INTO open_tasks (task_id, due_at, unit, category, partner, zones)
        VALUES (p_task, t.due_at, t.unit, t.category, t.partner, t.zones)
        ON CONFLICT (task_id) DO UPDATE SET unit = EXCLUDED.unit;
    ELSE
        DELETE FROM open_tasks WHERE task_id = p_task;
    END IF;
    UPDATE tasks SET known = t.known, partner = t.partner, zones = t.zones, day = t.day,
           ack_target_min = t.ack_target_min, done_target_min = t.done_target_min,
           due_at = t.due_at, category = t.category, opened_counted = t.opened_counted,
           ack_counted = t.ack_counted, done_counted = t.done_counted
     WHERE task_id = p_task;
END $$;

CREATE FUNCTION apply_report(p_id text, p_partner text, p_role text, p_category text,
    p_focus text, p_sensitive boolean, p_places text[], p_has_pos boolean,
    p_lat double precision, p_lon double precision, p_at_us bigint, p_night boolean,
    p_target int, p_imported boolean) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_at timestamptz := to_timestamp(p_at_us / 1000000.0);
    v_day date := local_day(v_at);
    v_zones text[];
    v_task text;
BEGIN
    INSERT INTO categories (code, name, focus_area, sensitive, target_min)
    VALUES (p_category, p_category, coalesce(nullif(p_focus, ''), 'other'), p_sensitive, p_target)
    ON CONFLICT (code) DO NOTHING;
    SELECT ARRAY['*'] || coalesce(array_agg(DISTINCT z), '{}') INTO v_zones FROM (
        SELECT unnest(p_places) AS z
        UNION
        SELECT 'survey:' || a.slug FROM survey_areas a
         WHERE p_has_pos AND p_lat BETWEEN a.min_lat AND a.max_lat
           AND p_lon BETWEEN a.min_lon AND a.max_lon AND geo_contains(a.geometry, p_lat, p_lon)
        UNION
        SELECT 'survey:' || s.area FROM survey_area_places s
         WHERE NOT p_has_pos AND s.place = ANY (p_places)) x WHERE z <> '*';
    INSERT INTO reports (report_id, partner, partner_role, category, zones, day, night,
                         target_min, reported_at, imported)
    VALUES (p_id, p_partner, p_role, p_category, v_zones, v_day, p_night, p_target, v_at,
            p_imported)
    ON CONFLICT (report_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN; -- published twice (e.g. an import run again): counted once
    END IF;
    PERFORM count_add(v_day, v_zones, p_partner, p_category, p_night, 1, 0, 0);
    -- Task events that arrived before the report (another stream).
    FOR v_task IN SELECT task_id FROM tasks WHERE report_id = p_id AND NOT known LOOP
        PERFORM task_settle(v_task);
    END LOOP;
    UPDATE task_joins SET counted = true WHERE report_id = p_id AND NOT counted;
    IF FOUND THEN
        PERFORM count_add(v_day, v_zones, p_partner, p_category, p_night, 0, 1, 0);
    END IF;
END $$;

-- kind: opened, dispatched, acknowledged, escalated, completed, declined,
-- joined. p_report: the opening or joining report.
CREATE FUNCTION apply_task(p_kind text, p_task text, p_report text, p_category text,
    p_place text, p_unit text, p_at_us bigint, p_owner text, p_reason text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_at timestamptz := to_timestamp(p_at_us / 1000000.0);
    r reports;
BEGIN
    IF p_kind = 'opened' THEN
        INSERT INTO tasks (task_id, report_id, category, place, opened_at, reopened)
        VALUES (p_task, p_report, p_category, p_place, v_at,
                EXISTS (SELECT 1 FROM last_done WHERE place = p_place AND category = p_category
                           AND at > v_at - interval '30 days'))
        ON CONFLICT (task_id) DO NOTHING;
    ELSIF p_kind = 'joined' THEN
        INSERT INTO task_joins (report_id, task_id) VALUES (p_report, p_task)
        ON CONFLICT (report_id) DO NOTHING;
        IF FOUND THEN
            SELECT * INTO r FROM reports WHERE report_id = p_report;
            IF FOUND THEN
                PERFORM count_add(r.day, r.zones, r.partner, r.category, r.night, 0, 1, 0);
                UPDATE task_joins SET counted = true WHERE report_id = p_report;
            END IF;
        END IF;
        IF p_unit <> '' THEN
            UPDATE tasks SET unit = p_unit WHERE task_id = p_task AND unit = '';
        END IF;
        RETURN;
    ELSIF p_kind = 'dispatched' THEN
        UPDATE tasks SET unit = p_unit WHERE task_id = p_task AND acked_at IS NULL;
    ELSIF p_kind = 'acknowledged' THEN
        UPDATE tasks SET acked_at = coalesce(acked_at, v_at),
                         unit = CASE WHEN p_unit <> '' THEN p_unit ELSE unit END
         WHERE task_id = p_task;
    ELSIF p_kind = 'escalated' THEN
        UPDATE tasks SET escalated_at = coalesce(escalated_at, v_at),
                         escalations = escalations + 1 WHERE task_id = p_task;
    ELSIF p_kind = 'completed' THEN
        UPDATE tasks SET done_at = coalesce(done_at, v_at) WHERE task_id = p_task
               AND declined_at IS NULL;
        INSERT INTO last_done (place, category, at)
        SELECT place, category, v_at FROM tasks WHERE task_id = p_task AND place <> ''
        ON CONFLICT (place, category) DO UPDATE SET at = greatest(last_done.at, EXCLUDED.at);
    ELSIF p_kind = 'declined' THEN
        UPDATE tasks SET declined_at = coalesce(declined_at, v_at),
               declined_owner = nullif(p_owner, ''), declined_reason = p_reason
         WHERE task_id = p_task AND done_at IS NULL;
    END IF;
    PERFORM task_settle(p_task);
END $$;

CREATE FUNCTION apply_walk(p_id text, p_version bigint, p_area text, p_title text,
    p_status text, p_starts_us bigint, p_after_dark boolean, p_places text[])
RETURNS void LANGUAGE sql AS $$
    INSERT INTO walks AS w (walk_id, version, area, title, status, starts_at, after_dark, places)
    VALUES (p_id, p_version, p_area, p_title, p_status,
            CASE WHEN p_starts_us > 0 THEN to_timestamp(p_starts_us / 1000000.0) END,
            p_after_dark, p_places)
    ON CONFLICT (walk_id) DO UPDATE SET version = EXCLUDED.version, area = EXCLUDED.area,
        title = EXCLUDED.title, status = EXCLUDED.status, starts_at = EXCLUDED.starts_at,
        after_dark = EXCLUDED.after_dark, places = EXCLUDED.places
     WHERE w.version < EXCLUDED.version;
$$;

CREATE FUNCTION apply_finding(p_id text, p_version bigint, p_walk text, p_place text,
    p_category text, p_status text, p_responsible text, p_deadline_us bigint,
    p_owner text, p_recorded_us bigint, p_status_us bigint)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO findings AS f (finding_id, version, walk_id, place, category, status,
                               responsible, deadline, declined_owner, recorded_at, done_at)
    VALUES (p_id, p_version, p_walk, p_place, p_category, p_status, p_responsible,
            CASE WHEN p_deadline_us > 0 THEN to_timestamp(p_deadline_us / 1000000.0) END,
            p_owner, to_timestamp(p_recorded_us / 1000000.0),
            CASE WHEN p_status IN ('done', 'verified')
                 THEN to_timestamp(p_status_us / 1000000.0) END)
    ON CONFLICT (finding_id) DO UPDATE SET version = EXCLUDED.version,
        walk_id = EXCLUDED.walk_id, place = EXCLUDED.place, category = EXCLUDED.category,
        status = EXCLUDED.status, responsible = EXCLUDED.responsible,
        deadline = EXCLUDED.deadline, declined_owner = EXCLUDED.declined_owner,
        recorded_at = EXCLUDED.recorded_at,
        done_at = CASE WHEN EXCLUDED.status IN ('done', 'verified')
                       THEN coalesce(f.done_at, EXCLUDED.done_at) END
     WHERE f.version < EXCLUDED.version;
$$;

-- One SurveyFiguresLoaded: areas (jsonb [{slug,name,geometry}]) and
-- figures (jsonb [{area,indicator,value,unit,respondents}]).
CREATE FUNCTION apply_survey(p_survey text, p_year int, p_source text, p_illustrative boolean,
    p_areas jsonb, p_figures jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    a jsonb;
BEGIN
    FOR a IN SELECT * FROM jsonb_array_elements(p_areas) LOOP
        INSERT INTO survey_areas (slug, name, geometry, min_lat, min_lon, max_lat, max_lon)
        SELECT a->>'slug', a->>'name', a->'geometry', min(lat), min(lon), max(lat), max(lon)
          FROM geo_points(a->'geometry')
        ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name, geometry = EXCLUDED.geometry,
            min_lat = EXCLUDED.min_lat, min_lon = EXCLUDED.min_lon,
            max_lat = EXCLUDED.max_lat, max_lon = EXCLUDED.max_lon;
    END LOOP;
    DELETE FROM survey_figures WHERE survey = p_survey AND year = p_year;
    INSERT INTO survey_figures (survey, year, area, indicator, value, unit, respondents,
                                illustrative, source)
    SELECT p_survey, p_year, f->>'area', f->>'indicator', (f->>'value')::float8,
           coalesce(f->>'unit', ''), coalesce((f->>'respondents')::int, 0), p_illustrative,
           p_source
      FROM jsonb_array_elements(p_figures) f
    ON CONFLICT DO NOTHING;
    PERFORM survey_membership_refresh();
END $$;

-- walk-planner's HTTP API in one function: api(a) gets what the C handler
-- read from the request ({"op", "key", "params", "query", "body", "idem",
-- "cfg", "sunset_us", "base_url"}) and returns {"status", "body"} or
-- {"status", "content_type", "text"}. A refusal raises SQLSTATE TW<status>
-- with the error object as its message, so nothing it wrote commits.

CREATE FUNCTION fail(st int, code text, field text, msg text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'TW' || st::text,
        MESSAGE = jsonb_build_object('code', code, 'field', field, 'message', msg)::text;
END $$;

-- ---- typed getters naming the field (like services/common/json.h) ----

-- True if b has no f (or null); fails when it is required.
CREATE FUNCTION absent(b jsonb, f text, req boolean) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF b->f IS NULL OR jsonb_typeof(b->f) = 'null' THEN
        IF req THEN
            PERFORM fail(400, 'missing_field', f, f || ' is required');
        END IF;
        RETURN true;
    END IF;
    RETURN false;
END $$;

CREATE FUNCTION get_text(b jsonb, f text, req boolean, maxlen int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := b->f;
BEGIN
    IF absent(b, f, req) THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) <> 'string' THEN
        PERFORM fail(400, 'wrong_type', f, f || ' must be a string');
    END IF;
    IF length(v #>> '{}') > maxlen THEN
        PERFORM fail(400, 'too_long', f, f || ' is longer than ' || maxlen || ' characters');
    END IF;
    IF req AND btrim(v #>> '{}') = '' THEN
        PERFORM fail(400, 'missing_field', f, f || ' must not be empty');
    END IF;
    RETURN v #>> '{}';
END $$;

CREATE FUNCTION get_num(b jsonb, f text, req boolean, lo float8, hi float8) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
    v jsonb := b->f;
BEGIN
    IF absent(b, f, req) THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) <> 'number' THEN
        PERFORM fail(400, 'wrong_type', f, f || ' must be a number');
    END IF;
    IF (v #>> '{}')::float8 < lo OR (v #>> '{}')::float8 > hi THEN
        PERFORM fail(400, 'out_of_range', f, f || ' must be between ' || lo || ' and ' || hi);
    END IF;
    RETURN (v #>> '{}')::float8;
END $$;

CREATE FUNCTION get_int(b jsonb, f text, req boolean, lo int, hi int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    v float8 := get_num(b, f, req, lo, hi);
BEGIN
    IF v IS NOT NULL AND v <> trunc(v) THEN
        PERFORM fail(400, 'wrong_type', f, f || ' must be an integer');
    END IF;
    RETURN v::int;
END $$;

CREATE FUNCTION get_bool(b jsonb, f text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF absent(b, f, false) THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(b->f) <> 'boolean' THEN
        PERFORM fail(400, 'wrong_type', f, f || ' must be true or false');
    END IF;
    RETURN (b->>f)::boolean;
END $$;

CREATE FUNCTION get_date(b jsonb, f text, req boolean) RETURNS date LANGUAGE plpgsql AS $$
DECLARE
    s text := get_text(b, f, req, 10);
BEGIN
    IF s IS NULL THEN
        RETURN NULL;
    END IF;
    IF s !~ '^\d{4}-\d{2}-\d{2}$' THEN
        PERFORM fail(400, 'invalid_value', f, f || ' must be a date YYYY-MM-DD');
    END IF;
    BEGIN
        RETURN s::date;
    EXCEPTION WHEN others THEN
        PERFORM fail(400, 'invalid_value', f, f || ' is not a valid date');
    END;
    RETURN NULL;
END $$;

CREATE FUNCTION get_time(b jsonb, f text, req boolean) RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
    s text := get_text(b, f, req, 40);
BEGIN
    IF s IS NULL THEN
        RETURN NULL;
    END IF;
    IF s !~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$' THEN
        PERFORM fail(400, 'invalid_value', f,
            f || ' must be an RFC 3339 time with an offset, e.g. 2026-12-15T15:30:00Z');
    END IF;
    BEGIN
        RETURN s::timestamptz;
    EXCEPTION WHEN others THEN
        PERFORM fail(400, 'invalid_value', f, f || ' is not a valid time');
    END;
    RETURN NULL;
END $$;

CREATE FUNCTION get_url(b jsonb, f text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s text := get_text(b, f, false, 2000);
BEGIN
    IF s IS NOT NULL AND s !~ '^https?://[^\s]+$' THEN
        PERFORM fail(400, 'invalid_value', f, f || ' must be an http(s) URL');
    END IF;
    RETURN s;
END $$;

CREATE FUNCTION check_fields(b jsonb, allowed text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k text;
BEGIN
    IF b IS NULL OR jsonb_typeof(b) <> 'object' THEN
        PERFORM fail(400, 'invalid_json', '', 'the body must be a JSON object');
    END IF;
    FOR k IN SELECT jsonb_object_keys(b) LOOP
        IF NOT k = ANY (allowed) THEN
            PERFORM fail(400, 'unknown_field', k, k || ' is not a known field');
        END IF;
    END LOOP;
END $$;

-- ---- who is asking ----

CREATE FUNCTION key_hash(k text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(k, 'UTF8')), 'hex')
$$;

-- The staff member's name for a staff key, or fails 401.
CREATE FUNCTION staff(a jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n text;
BEGIN
    IF a->>'key' IS NULL THEN
        PERFORM fail(401, 'unauthorized', NULL, 'an Authorization: Bearer key is required');
    END IF;
    SELECT name INTO n FROM staff_keys WHERE key_hash = key_hash(a->>'key') AND revoked_at IS NULL;
    IF n IS NULL THEN
        PERFORM fail(401, 'unauthorized', NULL, 'unknown or revoked key');
    END IF;
    RETURN n;
END $$;

-- The staff member's name for a staff key, 'walk' for the walk's own key
-- (the phone page), or fails 401.
CREATE FUNCTION staff_or_walk(a jsonb, w uuid) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF a->>'key' IS NOT NULL AND w IS NOT NULL AND a->>'key' = walk_key(w) THEN
        RETURN 'walk';
    END IF;
    RETURN staff(a);
END $$;

CREATE FUNCTION uuid_param(a jsonb, f text) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    s text := a->'params'->>f;
BEGIN
    IF s !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN
        PERFORM fail(404, 'not_found', NULL, 'no such ' || f);
    END IF;
    RETURN s::uuid;
END $$;

CREATE FUNCTION the_walk(a jsonb) RETURNS walks LANGUAGE plpgsql AS $$
DECLARE
    w walks;
BEGIN
    SELECT * INTO w FROM walks WHERE id = uuid_param(a, 'id');
    IF w.id IS NULL THEN
        PERFORM fail(404, 'not_found', NULL, 'no such walk');
    END IF;
    RETURN w;
END $$;

CREATE FUNCTION ok(st int, body jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('status', st, 'body', body)
$$;
CREATE FUNCTION page(st int, ctype text, t text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('status', st, 'content_type', ctype, 'text', t)
$$;
CREATE FUNCTION html(s text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(replace(replace(replace(replace(coalesce(s, ''), '&', '&amp;'), '<', '&lt;'),
        '>', '&gt;'), '"', '&quot;'), '''', '&#39;')
$$;

-- ---- hotspots ----

-- Per place in [p_from, p_to) (local days): reports, after dark, severity
-- sum, repeat reports (a category coming back on another day: per
-- category, days with reports - 1), reopened tasks, the top category, the
-- survey area; score = severity_sum / 3 + 0.5 * repeat_reports
-- + 2 * reopened (docs/walk-planner.md). Whole weeks come from agg_weeks,
-- the days before the first and after the last whole week from agg_reports.
CREATE FUNCTION hotspot_rows(p_from date, p_to date, p_area text)
RETURNS TABLE (place text, name text, lat float8, long float8, reports bigint, night bigint,
    severity_sum bigint, repeat_reports bigint, reopened bigint, top_category text,
    top_count bigint, lighting bigint, area text, score float8)
LANGUAGE sql STABLE AS $$
    WITH wk AS (SELECT p_from + (8 - extract(isodow FROM p_from)::int) % 7 AS wf,
                       p_to - (extract(isodow FROM p_to)::int - 1) AS wt),
    src AS (
        SELECT g.place, g.category, g.reports, g.night, g.severity_sum, g.days
          FROM agg_weeks g, wk WHERE wk.wf < wk.wt AND g.week >= wk.wf AND g.week < wk.wt
        UNION ALL
        SELECT a.place, a.category, a.reports, a.night, a.severity_sum, 1
          FROM agg_reports a, wk WHERE a.day >= p_from
           AND a.day < CASE WHEN wk.wf < wk.wt THEN wk.wf ELSE p_to END
        UNION ALL
        SELECT a.place, a.category, a.reports, a.night, a.severity_sum, 1
          FROM agg_reports a, wk WHERE wk.wf < wk.wt AND a.day >= wk.wt AND a.day < p_to),
    r AS (
        SELECT src.place, src.category, sum(src.reports) AS n, sum(src.night) AS nn,
               sum(src.severity_sum) AS s, sum(src.days) AS days
          FROM src WHERE src.place <> '' GROUP BY src.place, src.category),
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

-- The latest figures of each survey for an area.
CREATE FUNCTION survey_of(p_area text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('survey', f.survey, 'year', f.year,
        'indicator', f.indicator, 'value', f.value, 'unit', f.unit,
        'illustrative', f.illustrative) ORDER BY f.survey, f.indicator), '[]')
      FROM survey_figures f
     WHERE f.area = p_area
       AND f.year = (SELECT max(year) FROM survey_figures g WHERE g.survey = f.survey
                      AND g.area = p_area)
$$;

CREATE FUNCTION indicator_words(i text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE i WHEN 'worry_late_evening' THEN 'worry late evening'
        WHEN 'police_index' THEN 'police index'
        ELSE replace(regexp_replace(i, '^disorder_', 'disorder: '), '_', ' ') END
$$;

CREATE FUNCTION explain(h record, survey jsonb) RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    s text;
    fig jsonb;
BEGIN
    s := h.reports || CASE WHEN h.reports = 1 THEN ' report' ELSE ' reports' END ||
        ', ' || h.night || ' after dark, ' || h.top_category || ' ' || h.top_count;
    IF h.repeat_reports > 0 THEN
        s := s || ', ' || h.repeat_reports || ' repeat';
    END IF;
    IF h.reopened > 0 THEN
        s := s || ', ' || h.reopened || ' reopened';
    END IF;
    SELECT e INTO fig FROM jsonb_array_elements(survey) e
     ORDER BY (e->>'indicator') = 'worry_late_evening' DESC, e->>'indicator' LIMIT 1;
    IF fig IS NOT NULL THEN
        s := s || '; survey: ' || indicator_words(fig->>'indicator') || ' ' ||
            trim(to_char((fig->>'value')::float8, 'FM999990.9'), '.') ||
            CASE WHEN fig->>'unit' = 'percent' THEN ' %' ELSE '' END;
    END IF;
    RETURN s;
END $$;

CREATE FUNCTION hotspots_json(p_from date, p_to date, p_area text, lim int) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    h record;
    out jsonb := '[]';
    sv jsonb;
    seen jsonb := '{}';
    rank int := 0;
BEGIN
    FOR h IN SELECT * FROM hotspot_rows(p_from, p_to, p_area) ORDER BY score DESC, place
             LIMIT lim LOOP
        rank := rank + 1;
        -- a handful of areas: each area's figures are read once
        IF NOT seen ? coalesce(h.area, '') THEN
            seen := seen || jsonb_build_object(coalesce(h.area, ''), survey_of(h.area));
        END IF;
        sv := seen->coalesce(h.area, '');
        out := out || jsonb_build_object('rank', rank, 'place', h.place, 'name', h.name,
            'lat', h.lat, 'long', h.long, 'score', h.score, 'reports', h.reports,
            'day', h.reports - h.night, 'night', h.night, 'severity_sum', h.severity_sum,
            'repeat_reports', h.repeat_reports, 'reopened', h.reopened,
            'top_category', h.top_category, 'area', h.area, 'survey', sv,
            'explanation', explain(h, sv));
    END LOOP;
    RETURN out;
END $$;

CREATE FUNCTION window_of(a jsonb, OUT f date, OUT t date) LANGUAGE plpgsql AS $$
BEGIN
    t := coalesce(get_date(a->'query', 'to', false), local_day(now()) + 1);
    f := coalesce(get_date(a->'query', 'from', false), t - 90);
    IF f >= t THEN
        PERFORM fail(400, 'invalid_value', 'from', 'from must be before to');
    END IF;
END $$;

CREATE FUNCTION api_hotspots(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    w record;
    lim int := 20;
BEGIN
    IF a->'query'->>'limit' IS NOT NULL THEN
        IF a->'query'->>'limit' !~ '^\d{1,3}$' OR (a->'query'->>'limit')::int NOT BETWEEN 1 AND 100 THEN
            PERFORM fail(400, 'out_of_range', 'limit', 'limit must be an integer between 1 and 100');
        END IF;
        lim := (a->'query'->>'limit')::int;
    END IF;
    PERFORM staff(a);
    w := window_of(a);
    RETURN ok(200, jsonb_build_object('from', w.f, 'to', w.t,
        'area', coalesce(a->'query'->>'area', 'district'),
        'hotspots', hotspots_json(w.f, w.t, a->'query'->>'area', lim)));
END $$;

-- ---- routes ----

-- Walking metres between two stops: great-circle distance times the
-- detour factor (streets are not straight lines).
CREATE FUNCTION walk_m(s1 jsonb, s2 jsonb, detour float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT haversine_m((s1->>'lat')::float8, (s1->>'long')::float8,
                       (s2->>'lat')::float8, (s2->>'long')::float8) * detour
$$;

-- Length of the closed loop through the stops in their order.
CREATE FUNCTION loop_m(stops jsonb, detour float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n int := jsonb_array_length(stops);
    m float8 := 0;
BEGIN
    IF n < 2 THEN
        RETURN 0;
    END IF;
    FOR i IN 0..n - 1 LOOP
        m := m + walk_m(stops->i, stops->((i + 1) % n), detour);
    END LOOP;
    RETURN m;
END $$;

-- Orders stops into a short loop: nearest neighbour from the first stop
-- (the top-ranked), then 2-opt (reverse a segment while that shortens the
-- loop).
CREATE FUNCTION plan_loop(stops jsonb, detour float8) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n int := jsonb_array_length(stops);
    ord int[] := ARRAY[0];
    used boolean[];
    cur int := 0;
    best int;
    bd float8;
    d float8;
    improved boolean := true;
    a int; b int; c int; e int;
    res jsonb := '[]';
BEGIN
    IF n <= 2 THEN
        RETURN stops;
    END IF;
    used := array_fill(false, ARRAY[n]);
    used[1] := true;
    FOR k IN 2..n LOOP
        best := NULL;
        FOR j IN 0..n - 1 LOOP
            IF NOT used[j + 1] THEN
                d := walk_m(stops->cur, stops->j, 1);
                IF best IS NULL OR d < bd THEN
                    best := j;
                    bd := d;
                END IF;
            END IF;
        END LOOP;
        used[best + 1] := true;
        ord := ord || best;
        cur := best;
    END LOOP;
    WHILE improved LOOP
        improved := false;
        FOR i IN 1..n - 2 LOOP
            FOR j IN i + 1..n - 1 LOOP
                a := ord[i]; b := ord[i + 1]; c := ord[j + 1]; e := ord[(j + 1) % n + 1];
                IF walk_m(stops->a, stops->c, 1) + walk_m(stops->b, stops->e, 1) + 1e-6 <
                   walk_m(stops->a, stops->b, 1) + walk_m(stops->c, stops->e, 1) THEN
                    ord := ord[1:i] || (SELECT array_agg(ord[k] ORDER BY k DESC)
                                          FROM generate_series(i + 1, j + 1) k) ||
                           ord[j + 2:n];
                    improved := true;
                END IF;
            END LOOP;
        END LOOP;
    END LOOP;
    FOR k IN 1..n LOOP
        res := res || jsonb_build_array(stops->ord[k]);
    END LOOP;
    RETURN res;
END $$;

-- Where stop c adds least to the loop through `tour`: {"after": the
-- 1-based position it goes after, "added": metres it adds}.
CREATE FUNCTION cheapest_insertion(tour jsonb, c jsonb, detour float8) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n int := jsonb_array_length(tour);
    best float8;
    pos int := 1;
    d float8;
BEGIN
    IF n = 1 THEN
        RETURN jsonb_build_object('after', 1, 'added', 2 * walk_m(tour->0, c, detour));
    END IF;
    FOR i IN 0..n - 1 LOOP
        d := walk_m(tour->i, c, detour) + walk_m(c, tour->((i + 1) % n), detour)
            - walk_m(tour->i, tour->((i + 1) % n), detour);
        IF best IS NULL OR d < best THEN
            best := d;
            pos := i + 1;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('after', pos, 'added', best);
END $$;

-- Invitees by role for stops at these places, at most 20: the district
-- officials, the police, residents' associations, and the housing
-- companies, businesses and schools that named one of the places.
CREATE FUNCTION invitees_for(p_places text[]) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('participant_id', p.id, 'name', p.name,
        'org', p.org, 'role', p.role, 'email', p.email) ORDER BY o), '[]')
      FROM (SELECT p.*, row_number() OVER (ORDER BY array_position(ARRAY['district_official',
                'police', 'housing', 'business', 'residents_association', 'school'], p.role),
                p.org, p.name) AS o
              FROM participants p
             WHERE p.role IN ('district_official', 'police', 'residents_association')
                OR p.places && p_places) p
     WHERE o <= 20
$$;

CREATE FUNCTION cfg(a jsonb, k text) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
    SELECT (a->'cfg'->>k)::float8
$$;

CREATE FUNCTION api_proposal(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := a->'body';
    want_area text;
    day date;
    max_stops int;
    max_m float8;
    max_min float8;
    detour float8 := cfg(a, 'detour');
    speed float8 := cfg(a, 'speed_kmh') * 1000 / 60; -- metres per minute
    stop_min int;
    cands jsonb := '[]';
    chosen jsonb;
    ins jsonb;
    seen jsonb := '{}'; -- survey figures per area
    stops jsonb;
    h record;
    route float8;
    walk_min float8;
    dark boolean;
    starts timestamptz;
    places text[];
BEGIN
    PERFORM staff(a);
    PERFORM check_fields(b, ARRAY['area', 'date', 'max_stops', 'max_length_m', 'max_minutes',
        'stop_minutes', 'from', 'to']);
    want_area := coalesce(get_text(b, 'area', false, 100), 'district');
    day := get_date(b, 'date', true);
    max_stops := coalesce(get_int(b, 'max_stops', false, 1, 40), 6);
    max_m := coalesce(get_num(b, 'max_length_m', false, 100, 50000), cfg(a, 'max_length_m'));
    max_min := coalesce(get_num(b, 'max_minutes', false, 10, 600), cfg(a, 'max_minutes'));
    stop_min := coalesce(get_int(b, 'stop_minutes', false, 0, 120), cfg(a, 'stop_minutes')::int);
    IF want_area NOT IN ('district') AND NOT EXISTS (SELECT 1 FROM survey_areas WHERE slug = want_area)
       AND NOT EXISTS (SELECT 1 FROM places WHERE slug = want_area) THEN
        PERFORM fail(400, 'invalid_value', 'area', 'area must be district, a survey area or a place');
    END IF;
    FOR h IN SELECT * FROM hotspot_rows(coalesce(get_date(b, 'from', false), day - 90),
                 coalesce(get_date(b, 'to', false), day + 1), want_area)
             WHERE lat IS NOT NULL ORDER BY score DESC, place LIMIT max_stops * 3 LOOP
        IF NOT seen ? coalesce(h.area, '') THEN
            seen := seen || jsonb_build_object(coalesce(h.area, ''), survey_of(h.area));
        END IF;
        cands := cands || jsonb_build_array(jsonb_build_object('place', h.place, 'name', h.name,
            'lat', h.lat, 'long', h.long, 'minutes', stop_min, 'score', h.score,
            'lighting', h.lighting, 'explanation', explain(h, seen->coalesce(h.area, ''))));
    END LOOP;
    IF jsonb_array_length(cands) = 0 THEN
        PERFORM fail(422, 'no_hotspots', 'area', 'no reported places with coordinates in this area and period');
    END IF;
    -- Greedy by rank: a place joins the walk if the loop with it inserted
    -- where it adds least still fits the length and the time. The final
    -- order is nearest neighbour + 2-opt, unless the insertion loop is
    -- shorter.
    chosen := jsonb_build_array(cands->0);
    route := 0;
    FOR k IN 1..jsonb_array_length(cands) - 1 LOOP
        EXIT WHEN jsonb_array_length(chosen) >= max_stops;
        ins := cheapest_insertion(chosen, cands->k, detour);
        IF route + (ins->>'added')::float8 <= max_m AND (route + (ins->>'added')::float8) / speed
               + stop_min * (jsonb_array_length(chosen) + 1) <= max_min THEN
            route := route + (ins->>'added')::float8;
            chosen := (SELECT jsonb_agg(e ORDER BY i) FROM (
                SELECT e, i FROM jsonb_array_elements(chosen) WITH ORDINALITY x(e, i)
                UNION ALL SELECT cands->k, (ins->>'after')::int + 0.5) y);
        END IF;
    END LOOP;
    stops := plan_loop(chosen, detour);
    IF loop_m(stops, detour) > loop_m(chosen, detour) THEN
        stops := chosen;
    END IF;
    route := loop_m(stops, detour);
    walk_min := route / speed + stop_min * jsonb_array_length(stops);
    SELECT array_agg(s->>'place') INTO places FROM jsonb_array_elements(stops) s;
    -- After dark when lighting or openness is among the issues: lighting
    -- reports at a stop, or an earlier finding there scoring lighting or
    -- openness 2 or worse.
    dark := EXISTS (SELECT 1 FROM jsonb_array_elements(stops) s WHERE (s->>'lighting')::int > 0)
        OR EXISTS (SELECT 1 FROM findings f WHERE f.place = ANY (places)
                    AND (f.scores[1] >= 2 OR f.scores[2] >= 2));
    IF dark THEN
        starts := to_timestamp(((a->>'sunset_us')::bigint / 1e6 + cfg(a, 'after_sunset_min') * 60));
        -- on the next quarter hour
        starts := to_timestamp(ceil(extract(epoch FROM starts) / 900) * 900);
    ELSE
        starts := (day + make_interval(mins => cfg(a, 'day_start_min')::int))::timestamp
            AT TIME ZONE 'Europe/Stockholm';
    END IF;
    RETURN ok(200, jsonb_build_object('proposal', jsonb_build_object(
        'title', 'Safety walk ' || want_area || ' ' || day, 'area', want_area, 'date', day,
        'after_dark', dark, 'sunset', to_timestamp((a->>'sunset_us')::bigint / 1e6),
        'starts_at', starts,
        'ends_at', starts + make_interval(mins => (ceil(walk_min / 5) * 5)::int),
        'route_m', round(route::numeric, 0), 'walk_minutes', round(walk_min::numeric, 0),
        'stops', (SELECT jsonb_agg(s || jsonb_build_object('index', i - 1) ORDER BY i)
                    FROM jsonb_array_elements(stops) WITH ORDINALITY e(s, i)),
        'invitees', invitees_for(places))));
END $$;

-- ---- walks ----

CREATE FUNCTION walk_json(w walks, full_view boolean, base text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('walk_id', w.id, 'version', w.version, 'title', w.title,
        'area', w.area, 'status', w.status, 'starts_at', w.starts_at, 'ends_at', w.ends_at,
        'after_dark', w.after_dark, 'route_m', round(w.route_m::numeric, 0),
        'rewalk_of', w.rewalk_of, 'ics_sequence', w.ics_sequence,
        'stops', (SELECT coalesce(jsonb_agg(jsonb_build_object('index', i - 1,
                    'place', s->>'place', 'name', s->>'name', 'lat', s->'lat', 'long', s->'long',
                    'minutes', s->'minutes') ORDER BY i), '[]')
                    FROM jsonb_array_elements(w.stops) WITH ORDINALITY e(s, i)),
        'steps', (SELECT coalesce(jsonb_agg(jsonb_build_object('status', st.status,
                    'date', st.on_date, 'by', CASE WHEN full_view THEN st.by_name END,
                    'note', st.note) ORDER BY st.id), '[]')
                    FROM walk_steps st WHERE st.walk_id = w.id),
        'findings', (SELECT count(*) FROM findings f WHERE f.walk_id = w.id)) ||
    CASE WHEN full_view THEN jsonb_build_object(
        'notes', w.notes, 'created_by', w.created_by,
        'phone_url', base || '/phone/?walk=' || w.id || '#key=' || walk_key(w.id),
        'invitees', (SELECT coalesce(jsonb_agg(jsonb_build_object('invitee_id', i.id,
                    'participant_id', i.participant_id, 'name', i.name, 'org', i.org,
                    'role', i.role, 'email', i.email, 'answer', i.answer) ORDER BY i.name), '[]')
                    FROM invitees i WHERE i.walk_id = w.id AND NOT i.removed))
    ELSE '{}'::jsonb END
$$;

-- Reads stops [{place?, name?, lat?, long?, minutes?}]: a known place
-- fills what is left out.
CREATE FUNCTION read_stops(b jsonb, stop_min int) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    arr jsonb := b->'stops';
    s jsonb;
    p places;
    out jsonb := '[]';
    n int := 0;
    f text;
BEGIN
    IF arr IS NULL OR jsonb_typeof(arr) <> 'array' THEN
        PERFORM fail(400, CASE WHEN arr IS NULL THEN 'missing_field' ELSE 'wrong_type' END,
            'stops', 'stops must be an array of stops');
    END IF;
    IF jsonb_array_length(arr) > 40 THEN
        PERFORM fail(400, 'out_of_range', 'stops', 'a walk has at most 40 stops');
    END IF;
    FOR s IN SELECT * FROM jsonb_array_elements(arr) LOOP
        f := 'stops[' || n || ']';
        IF jsonb_typeof(s) <> 'object' THEN
            PERFORM fail(400, 'wrong_type', f, f || ' must be an object');
        END IF;
        p := NULL;
        IF s->>'place' IS NOT NULL THEN
            SELECT * INTO p FROM places WHERE slug = s->>'place';
            IF p.slug IS NULL THEN
                PERFORM fail(400, 'invalid_value', f || '.place', 'unknown place ' || (s->>'place'));
            END IF;
        END IF;
        out := out || jsonb_build_array(jsonb_build_object(
            'place', coalesce(p.slug, ''),
            'name', coalesce(get_text(s, 'name', false, 200), p.name, f),
            'lat', coalesce(get_num(s, 'lat', p.lat IS NULL, -90, 90), p.lat),
            'long', coalesce(get_num(s, 'long', p.long IS NULL, -180, 180), p.long),
            'minutes', coalesce(get_int(s, 'minutes', false, 0, 240), stop_min)));
        n := n + 1;
    END LOOP;
    RETURN out;
END $$;

-- Replaces the invitees of a walk by [{participant_id} | {name, org, role,
-- email}] (at most 20); with `mail`, the removed get a CANCEL and the rest
-- the updated REQUEST.
CREATE FUNCTION set_invitees(w_id uuid, arr jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    p participants;
    n int := 0;
    f text;
BEGIN
    IF jsonb_typeof(arr) <> 'array' THEN
        PERFORM fail(400, 'wrong_type', 'invitees', 'invitees must be an array');
    END IF;
    IF jsonb_array_length(arr) > 20 THEN
        PERFORM fail(400, 'out_of_range', 'invitees', 'at most 20 invitees');
    END IF;
    UPDATE invitees SET removed = true WHERE walk_id = w_id;
    FOR e IN SELECT * FROM jsonb_array_elements(arr) LOOP
        f := 'invitees[' || n || ']';
        p := NULL;
        IF e->>'participant_id' IS NOT NULL THEN
            SELECT * INTO p FROM participants WHERE id::text = e->>'participant_id';
            IF p.id IS NULL THEN
                PERFORM fail(400, 'invalid_value', f || '.participant_id', 'unknown participant');
            END IF;
        END IF;
        IF p.id IS NOT NULL AND EXISTS (SELECT 1 FROM invitees WHERE walk_id = w_id
                                         AND participant_id = p.id) THEN
            UPDATE invitees SET removed = false WHERE walk_id = w_id AND participant_id = p.id;
        ELSE
            INSERT INTO invitees (walk_id, participant_id, name, org, role, email)
            VALUES (w_id, p.id, coalesce(p.name, get_text(e, 'name', true, 200)),
                coalesce(p.org, get_text(e, 'org', true, 200)),
                coalesce(p.role, get_text(e, 'role', true, 40)),
                coalesce(p.email, get_text(e, 'email', true, 254)));
        END IF;
        n := n + 1;
    END LOOP;
    IF EXISTS (SELECT 1 FROM invitees WHERE walk_id = w_id AND NOT removed AND email !~ '^[^@\s]+@[^@\s]+$') THEN
        PERFORM fail(400, 'invalid_value', 'invitees', 'an invitee e-mail address is not valid');
    END IF;
END $$;

CREATE FUNCTION api_walk_create(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := a->'body';
    who text := staff(a);
    w walks;
    stops jsonb;
BEGIN
    PERFORM check_fields(b, ARRAY['title', 'area', 'date', 'starts_at', 'ends_at', 'after_dark',
        'stops', 'invitees', 'notes', 'route_m', 'walk_minutes', 'sunset']);
    stops := read_stops(b, cfg(a, 'stop_minutes')::int);
    w.id := gen_random_uuid();
    w.area := coalesce(get_text(b, 'area', false, 100), 'district');
    w.starts_at := get_time(b, 'starts_at', true);
    w.ends_at := coalesce(get_time(b, 'ends_at', false), w.starts_at + interval '2 hours');
    IF w.ends_at <= w.starts_at THEN
        PERFORM fail(400, 'invalid_value', 'ends_at', 'ends_at must be after starts_at');
    END IF;
    w.title := coalesce(get_text(b, 'title', false, 200), 'Safety walk ' || w.area);
    INSERT INTO walks (id, title, area, starts_at, ends_at, after_dark, stops, route_m, notes,
        created_by, organizer, organizer_email)
    VALUES (w.id, w.title, w.area, w.starts_at, w.ends_at, coalesce(get_bool(b, 'after_dark'), false),
        stops, loop_m(stops, cfg(a, 'detour')), coalesce(get_text(b, 'notes', false, 4000), ''),
        who, who, a->'cfg'->>'organizer_email');
    INSERT INTO walk_steps (walk_id, status, on_date, by_name) VALUES (w.id, 'planned', local_day(now()), who);
    IF b ? 'invitees' THEN
        PERFORM set_invitees(w.id, b->'invitees');
    END IF;
    PERFORM walk_emit(w.id);
    SELECT * INTO w FROM walks WHERE id = w.id;
    RETURN ok(201, jsonb_build_object('walk', walk_json(w, true, a->>'base_url')));
END $$;

CREATE FUNCTION api_walk_list(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM staff(a);
    RETURN ok(200, jsonb_build_object('walks', (SELECT coalesce(jsonb_agg(
        walk_json(w, false, a->>'base_url') ORDER BY w.starts_at DESC), '[]') FROM walks w)));
END $$;

CREATE FUNCTION api_walk_get(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    w walks := the_walk(a);
    who text := staff_or_walk(a, w.id);
BEGIN
    RETURN ok(200, walk_json(w, who <> 'walk', a->>'base_url'));
END $$;

CREATE FUNCTION api_walk_patch(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := a->'body';
    who text := staff(a);
    w walks := the_walk(a);
    gone invitees;
BEGIN
    PERFORM check_fields(b, ARRAY['title', 'area', 'starts_at', 'ends_at', 'after_dark', 'stops',
        'invitees', 'notes']);
    IF w.status IN ('cancelled', 'rewalk_done') THEN
        PERFORM fail(409, 'conflict', 'status', 'the walk is ' || w.status);
    END IF;
    IF b ? 'stops' THEN
        w.stops := read_stops(b, cfg(a, 'stop_minutes')::int);
        w.route_m := loop_m(w.stops, cfg(a, 'detour'));
    END IF;
    w.title := coalesce(get_text(b, 'title', false, 200), w.title);
    w.area := coalesce(get_text(b, 'area', false, 100), w.area);
    w.starts_at := coalesce(get_time(b, 'starts_at', false), w.starts_at);
    w.ends_at := coalesce(get_time(b, 'ends_at', false), w.ends_at);
    w.after_dark := coalesce(get_bool(b, 'after_dark'), w.after_dark);
    w.notes := coalesce(get_text(b, 'notes', false, 4000), w.notes);
    IF w.ends_at <= w.starts_at THEN
        PERFORM fail(400, 'invalid_value', 'ends_at', 'ends_at must be after starts_at');
    END IF;
    UPDATE walks SET title = w.title, area = w.area, starts_at = w.starts_at, ends_at = w.ends_at,
        after_dark = w.after_dark, notes = w.notes, stops = w.stops, route_m = w.route_m,
        version = version + 1, ics_sequence = ics_sequence + 1, updated_at = now()
     WHERE id = w.id;
    IF b ? 'invitees' THEN
        PERFORM set_invitees(w.id, b->'invitees');
    END IF;
    SELECT * INTO w FROM walks WHERE id = w.id;
    IF w.invited THEN
        -- Everyone invited hears of the change; the removed are cancelled.
        FOR gone IN SELECT * FROM invitees WHERE walk_id = w.id AND removed AND answer <> 'removed' LOOP
            PERFORM invite_one(w, gone, 'CANCEL', a->>'base_url');
            UPDATE invitees SET answer = 'removed' WHERE id = gone.id;
        END LOOP;
        PERFORM invite_all(w.id, 'REQUEST', a->>'base_url');
    END IF;
    PERFORM walk_emit(w.id);
    RETURN ok(200, jsonb_build_object('walk', walk_json(w, true, a->>'base_url')));
END $$;

CREATE FUNCTION status_rank(s text) RETURNS int LANGUAGE sql IMMUTABLE AS $$
    SELECT array_position(ARRAY['planned', 'invitations_sent', 'pre_meeting_held', 'walked',
        'protocol_published', 'follow_up_held', 'rewalk_done'], s)
$$;

CREATE FUNCTION api_walk_status(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := a->'body';
    who text := staff(a);
    w walks := the_walk(a);
    st text;
    sent int := 0;
BEGIN
    PERFORM check_fields(b, ARRAY['status', 'date', 'by', 'note']);
    st := get_text(b, 'status', true, 40);
    IF st <> 'cancelled' AND status_rank(st) IS NULL THEN
        PERFORM fail(400, 'invalid_value', 'status', 'status must be one of planned, '
            'invitations_sent, pre_meeting_held, walked, protocol_published, follow_up_held, '
            'rewalk_done, cancelled');
    END IF;
    IF w.status IN ('cancelled', 'rewalk_done') OR
       (st <> 'cancelled' AND status_rank(st) <= status_rank(w.status)) THEN
        PERFORM fail(409, 'conflict', 'status', 'a walk that is ' || w.status ||
            ' cannot become ' || st);
    END IF;
    IF st = 'rewalk_done' AND NOT EXISTS (SELECT 1 FROM walks r WHERE r.rewalk_of = w.id) THEN
        PERFORM fail(409, 'conflict', 'status', 'no re-walk of this walk exists (POST /v1/walks/{id}/rewalk)');
    END IF;
    IF st = 'cancelled' THEN
        UPDATE walks SET ics_sequence = ics_sequence + 1 WHERE id = w.id;
    END IF;
    UPDATE walks SET status = st, version = version + 1, updated_at = now(),
        invited = invited OR st = 'invitations_sent' WHERE id = w.id;
    INSERT INTO walk_steps (walk_id, status, on_date, by_name, note)
    VALUES (w.id, st, coalesce(get_date(b, 'date', false), local_day(now())),
        coalesce(get_text(b, 'by', false, 200), who), coalesce(get_text(b, 'note', false, 2000), ''));
    IF st = 'invitations_sent' THEN
        sent := invite_all(w.id, 'REQUEST', a->>'base_url');
    ELSIF st = 'cancelled' AND w.invited THEN
        sent := invite_all(w.id, 'CANCEL', a->>'base_url');
    END IF;
    PERFORM walk_emit(w.id);
    SELECT * INTO w FROM walks WHERE id = w.id;
    RETURN ok(200, jsonb_build_object('walk', walk_json(w, true, a->>'base_url'), 'mails', sent));
END $$;

CREATE FUNCTION api_rewalk(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := coalesce(a->'body', '{}');
    who text := staff(a);
    w walks := the_walk(a);
    r walks;
BEGIN
    PERFORM check_fields(b, ARRAY['starts_at', 'ends_at', 'title']);
    r.id := gen_random_uuid();
    r.starts_at := coalesce(get_time(b, 'starts_at', false), w.starts_at + interval '6 months');
    r.ends_at := coalesce(get_time(b, 'ends_at', false), r.starts_at + (w.ends_at - w.starts_at));
    INSERT INTO walks (id, title, area, starts_at, ends_at, after_dark, stops, route_m, rewalk_of,
        created_by, organizer, organizer_email)
    VALUES (r.id, coalesce(get_text(b, 'title', false, 200), 'Re-walk: ' || w.title), w.area,
        r.starts_at, r.ends_at, w.after_dark, w.stops, w.route_m, w.id, who, who,
        a->'cfg'->>'organizer_email');
    INSERT INTO walk_steps (walk_id, status, on_date, by_name) VALUES (r.id, 'planned', local_day(now()), who);
    INSERT INTO invitees (walk_id, participant_id, name, org, role, email)
    SELECT r.id, participant_id, name, org, role, email FROM invitees WHERE walk_id = w.id AND NOT removed;
    PERFORM walk_emit(r.id);
    SELECT * INTO r FROM walks WHERE id = r.id;
    RETURN ok(201, jsonb_build_object('walk', walk_json(r, true, a->>'base_url'),
        'to_verify', (SELECT coalesce(jsonb_agg(finding_json(f) ORDER BY f.stop_index, f.recorded_at), '[]')
                        FROM findings f WHERE f.walk_id = w.id)));
END $$;

-- ---- findings ----

CREATE FUNCTION params() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['lighting', 'openness', 'visibility', 'people', 'security', 'walk_path',
        'public_transport', 'gender_usage', 'feeling']
$$;

CREATE FUNCTION finding_json(f findings) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('finding_id', f.id, 'walk_id', f.walk_id, 'version', f.version,
        'stop_index', f.stop_index, 'place', f.place, 'category', f.category,
        'severity', f.severity,
        'scores', (SELECT coalesce(jsonb_object_agg(p, f.scores[i]) FILTER (WHERE f.scores[i] >= 0), '{}')
                     FROM unnest(params()) WITH ORDINALITY u(p, i)),
        'description', f.description, 'photo_url', f.photo_url, 'lat', f.lat, 'long', f.long,
        'night', f.night, 'responsible_kind', f.responsible_kind, 'responsible', f.responsible,
        'deadline', f.deadline, 'status', f.status, 'declined_reason', f.declined_reason,
        'declined_owner', f.declined_owner, 'verified_photo_url', f.verified_photo_url,
        'verified_in', f.verified_in, 'recorded_at', f.recorded_at, 'status_at', f.status_at)
$$;

CREATE FUNCTION read_scores(b jsonb, old int[]) RETURNS int[] LANGUAGE plpgsql AS $$
DECLARE
    s jsonb := b->'scores';
    k text;
    out int[] := coalesce(old, array_fill(-1, ARRAY[9]));
BEGIN
    IF s IS NULL OR jsonb_typeof(s) = 'null' THEN
        RETURN out;
    END IF;
    IF jsonb_typeof(s) <> 'object' THEN
        PERFORM fail(400, 'wrong_type', 'scores', 'scores must be an object');
    END IF;
    FOR k IN SELECT jsonb_object_keys(s) LOOP
        IF NOT k = ANY (params()) THEN
            PERFORM fail(400, 'unknown_field', 'scores.' || k, k || ' is not a safety-audit parameter');
        END IF;
        out[array_position(params(), k)] := get_int(s, k, true, 0, 3);
    END LOOP;
    RETURN out;
END $$;

-- What a finding's owner gets: a district unit a task at the notifier,
-- anyone else a mail with a signed progress link (to the participant of
-- that organisation, if there is one).
CREATE FUNCTION finding_route(f_id uuid, base text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    f findings;
    p participants;
BEGIN
    SELECT * INTO f FROM findings WHERE id = f_id;
    IF f.responsible_kind = 'district_unit' THEN
        PERFORM finding_task_emit(f.id);
        RETURN 'task';
    END IF;
    SELECT * INTO p FROM participants WHERE lower(org) = lower(f.responsible) ORDER BY created_at LIMIT 1;
    IF p.id IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM mail_emit(f.walk_id, p.email, p.name, 'finding_progress',
        'Safety walk finding for ' || f.responsible || ': ' ||
            coalesce((SELECT name FROM categories WHERE code = f.category), f.category),
        'A safety walk found: ' || f.description || E'\n\nPlace: ' || coalesce(nullif(f.place, ''), '-') ||
        E'\nDeadline: ' || f.deadline || E'\n\nPlease report progress here:\n' ||
        base || '/v1/findings/' || f.id || '/progress?sig=' || sign('progress.' || f.id) || E'\n',
        NULL, NULL);
    RETURN 'mail';
END $$;

CREATE FUNCTION check_kind(k text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF k IS NOT NULL AND k NOT IN ('district_unit', 'administration', 'housing', 'private') THEN
        PERFORM fail(400, 'invalid_value', 'responsible_kind',
            'responsible_kind must be district_unit, administration, housing or private');
    END IF;
    RETURN k;
END $$;

CREATE FUNCTION check_category(c text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF c IS NOT NULL AND NOT EXISTS (SELECT 1 FROM categories WHERE code = c) THEN
        PERFORM fail(400, 'invalid_value', 'category', 'unknown category ' || c);
    END IF;
    RETURN c;
END $$;

CREATE FUNCTION api_finding_create(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := a->'body';
    w walks := the_walk(a);
    who text := staff_or_walk(a, w.id);
    idem text := a->>'idem';
    hash text;
    f findings;
    routed text;
BEGIN
    IF idem IS NULL OR length(idem) < 1 OR length(idem) > 100 OR idem !~ '^[\x21-\x7e]+$' THEN
        PERFORM fail(400, 'invalid_value', 'Idempotency-Key',
            'the Idempotency-Key header is required: 1 to 100 printable characters');
    END IF;
    hash := md5(b::text);
    SELECT * INTO f FROM findings WHERE walk_id = w.id AND idem_key = idem;
    IF f.id IS NOT NULL THEN
        IF f.idem_hash <> hash THEN
            PERFORM fail(409, 'idempotency_conflict', 'Idempotency-Key',
                'this Idempotency-Key was used with another body');
        END IF;
        RETURN ok(200, jsonb_build_object('finding', finding_json(f)));
    END IF;
    PERFORM check_fields(b, ARRAY['stop_index', 'category', 'severity', 'scores', 'description',
        'photo_url', 'lat', 'long', 'night', 'responsible_kind', 'responsible', 'deadline']);
    IF w.status = 'cancelled' THEN
        PERFORM fail(409, 'conflict', 'walk', 'the walk is cancelled');
    END IF;
    f.id := gen_random_uuid();
    f.stop_index := get_int(b, 'stop_index', true, 0, greatest(jsonb_array_length(w.stops) - 1, 0));
    f.category := check_category(get_text(b, 'category', true, 64));
    f.severity := coalesce(get_int(b, 'severity', false, 1, 5), 3);
    f.scores := read_scores(b, NULL);
    f.description := coalesce(get_text(b, 'description', false, 4000), '');
    f.photo_url := get_url(b, 'photo_url');
    f.lat := get_num(b, 'lat', false, -90, 90);
    f.long := get_num(b, 'long', f.lat IS NOT NULL, -180, 180);
    IF f.long IS NOT NULL AND f.lat IS NULL THEN
        PERFORM fail(400, 'missing_field', 'lat', 'lat and long go together');
    END IF;
    f.night := coalesce(get_bool(b, 'night'), w.after_dark);
    f.responsible_kind := check_kind(get_text(b, 'responsible_kind', true, 40));
    f.responsible := get_text(b, 'responsible', true, 200);
    f.deadline := coalesce(get_date(b, 'deadline', false), (local_day(now()) + interval '6 months')::date);
    INSERT INTO findings (id, walk_id, stop_index, place, category, severity, scores, description,
        photo_url, lat, long, night, responsible_kind, responsible, deadline, idem_key, idem_hash)
    VALUES (f.id, w.id, f.stop_index, coalesce(w.stops->f.stop_index->>'place', ''), f.category,
        f.severity, f.scores, f.description, f.photo_url, f.lat, f.long, f.night,
        f.responsible_kind, f.responsible, f.deadline, idem, hash);
    INSERT INTO finding_steps (finding_id, status, by_name) VALUES (f.id, 'proposed', who);
    PERFORM finding_emit(f.id);
    routed := finding_route(f.id, a->>'base_url');
    SELECT * INTO f FROM findings WHERE id = f.id;
    RETURN ok(201, jsonb_build_object('finding', finding_json(f), 'routed', routed));
END $$;

CREATE FUNCTION api_finding_list(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    w walks := the_walk(a);
BEGIN
    PERFORM staff_or_walk(a, w.id);
    RETURN ok(200, jsonb_build_object('findings', (SELECT coalesce(jsonb_agg(finding_json(f)
        ORDER BY f.stop_index, f.recorded_at), '[]') FROM findings f WHERE f.walk_id = w.id)));
END $$;

CREATE FUNCTION the_finding(a jsonb) RETURNS findings LANGUAGE plpgsql AS $$
DECLARE
    f findings;
BEGIN
    SELECT * INTO f FROM findings WHERE id = uuid_param(a, 'id');
    IF f.id IS NULL THEN
        PERFORM fail(404, 'not_found', NULL, 'no such finding');
    END IF;
    RETURN f;
END $$;

CREATE FUNCTION api_finding_get(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    f findings := the_finding(a);
BEGIN
    PERFORM staff_or_walk(a, f.walk_id);
    RETURN ok(200, jsonb_build_object('finding', finding_json(f), 'history',
        (SELECT jsonb_agg(jsonb_build_object('status', s.status, 'by', s.by_name, 'note', s.note,
            'at', s.at) ORDER BY s.id) FROM finding_steps s WHERE s.finding_id = f.id)));
END $$;

CREATE FUNCTION check_status(b jsonb, st text, allowed text[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT st = ANY (allowed) THEN
        PERFORM fail(400, 'invalid_value', 'status', 'status must be one of ' || array_to_string(allowed, ', '));
    END IF;
    IF st = 'declined' THEN
        PERFORM get_text(b, 'declined_reason', true, 2000);
        PERFORM get_text(b, 'declined_owner', true, 200);
    END IF;
END $$;

CREATE FUNCTION api_finding_patch(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := a->'body';
    f findings := the_finding(a);
    who text := staff_or_walk(a, f.walk_id);
    st text;
    kind_was text := f.responsible_kind;
    resp_was text := f.responsible;
BEGIN
    PERFORM check_fields(b, ARRAY['category', 'severity', 'scores', 'description', 'photo_url',
        'responsible_kind', 'responsible', 'deadline', 'status', 'declined_reason',
        'declined_owner', 'note']);
    st := get_text(b, 'status', false, 40);
    IF st IS NOT NULL THEN
        PERFORM check_status(b, st, ARRAY['proposed', 'accepted', 'in_progress', 'done',
            'verified', 'not_fixed', 'declined']);
    END IF;
    UPDATE findings SET
        category = coalesce(check_category(get_text(b, 'category', false, 64)), category),
        severity = coalesce(get_int(b, 'severity', false, 1, 5), severity),
        scores = read_scores(b, scores),
        description = coalesce(get_text(b, 'description', false, 4000), description),
        photo_url = coalesce(get_url(b, 'photo_url'), photo_url),
        responsible_kind = coalesce(check_kind(get_text(b, 'responsible_kind', false, 40)), responsible_kind),
        responsible = coalesce(get_text(b, 'responsible', false, 200), responsible),
        deadline = coalesce(get_date(b, 'deadline', false), deadline),
        version = version + 1
     WHERE id = f.id RETURNING * INTO f;
    IF st IS NOT NULL AND st <> f.status THEN
        -- finding_set_status raises the version again and publishes.
        UPDATE findings SET version = version - 1 WHERE id = f.id;
        PERFORM finding_set_status(f.id, st, who, get_text(b, 'note', false, 2000),
            get_text(b, 'declined_reason', false, 2000), get_text(b, 'declined_owner', false, 200));
    ELSE
        PERFORM finding_emit(f.id);
    END IF;
    IF f.responsible_kind <> kind_was OR f.responsible <> resp_was THEN
        PERFORM finding_route(f.id, a->>'base_url');
    END IF;
    SELECT * INTO f FROM findings WHERE id = f.id;
    RETURN ok(200, jsonb_build_object('finding', finding_json(f)));
END $$;

-- At the re-walk: fixed (verified) or not (not_fixed), with a photo.
CREATE FUNCTION api_finding_verify(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    b jsonb := a->'body';
    f findings := the_finding(a);
    r walks;
    who text;
    fixed boolean;
BEGIN
    SELECT * INTO r FROM walks WHERE rewalk_of = f.walk_id ORDER BY created_at DESC LIMIT 1;
    who := staff_or_walk(a, coalesce(r.id, f.walk_id));
    PERFORM check_fields(b, ARRAY['fixed', 'photo_url', 'note']);
    fixed := get_bool(b, 'fixed');
    IF fixed IS NULL THEN
        PERFORM fail(400, 'missing_field', 'fixed', 'fixed (true or false) is required');
    END IF;
    UPDATE findings SET verified_photo_url = coalesce(get_url(b, 'photo_url'), verified_photo_url),
        verified_in = r.id WHERE id = f.id;
    PERFORM finding_set_status(f.id, CASE WHEN fixed THEN 'verified' ELSE 'not_fixed' END, who,
        get_text(b, 'note', false, 2000));
    SELECT * INTO f FROM findings WHERE id = f.id;
    RETURN ok(200, jsonb_build_object('finding', finding_json(f)));
END $$;

-- ---- signed links: progress by outside owners, answers to invitations ----

CREATE FUNCTION progress_page(f findings, msg text, base text, sig text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width"><title>Finding progress</title>'
        '<style>body{font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em}</style>'
        '</head><body><h1>Safety walk finding</h1>' ||
        CASE WHEN msg IS NOT NULL THEN '<p><strong>' || html(msg) || '</strong></p>' ELSE '' END ||
        '<p>' || html(f.description) || '</p><p>Responsible: ' || html(f.responsible) ||
        '<br>Deadline: ' || f.deadline || '<br>Status: <strong>' || f.status || '</strong></p>' ||
        '<form method="post" action="' || html(base || '/v1/findings/' || f.id || '/progress?sig=' || sig) || '">' ||
        '<label>Status <select name="status"><option value="in_progress">in progress</option>'
        '<option value="done">done</option></select></label><br>'
        '<label>Note <input name="note" maxlength="2000"></label><br>'
        '<button type="submit">Report progress</button></form></body></html>'
$$;

CREATE FUNCTION api_progress(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    f findings := the_finding(a);
    b jsonb := a->'body';
    sig text := a->'query'->>'sig';
    st text;
BEGIN
    IF sig IS NULL OR sig <> sign('progress.' || f.id) THEN
        RETURN page(403, 'text/html; charset=utf-8',
            '<!doctype html><html><body><h1>Link not valid</h1><p>This link is not valid.</p></body></html>');
    END IF;
    IF a->>'method' = 'GET' THEN
        RETURN page(200, 'text/html; charset=utf-8', progress_page(f, NULL, a->>'base_url', sig));
    END IF;
    st := get_text(b, 'status', true, 40);
    PERFORM check_status(b, st, ARRAY['in_progress', 'done', 'declined']);
    IF f.status IN ('verified', 'not_fixed', 'done', 'declined') THEN
        PERFORM fail(409, 'conflict', 'status', 'the finding is already ' || f.status);
    END IF;
    PERFORM finding_set_status(f.id, st, f.responsible, get_text(b, 'note', false, 2000),
        get_text(b, 'declined_reason', false, 2000), get_text(b, 'declined_owner', false, 200));
    SELECT * INTO f FROM findings WHERE id = f.id;
    IF a->>'form' = 'true' THEN
        RETURN page(200, 'text/html; charset=utf-8', progress_page(f, 'Thank you: recorded.', a->>'base_url', sig));
    END IF;
    RETURN ok(200, jsonb_build_object('finding', finding_json(f)));
END $$;

CREATE FUNCTION api_rsvp(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    q jsonb := a->'query';
    i invitees;
    w walks;
    head text := '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width"><title>Safety walk</title></head><body>';
BEGIN
    IF q->>'i' IS NULL OR q->>'w' IS NULL OR q->>'a' NOT IN ('accept', 'decline')
       OR q->>'sig' IS NULL
       OR q->>'sig' <> sign('rsvp.' || (q->>'i') || '.' || (q->>'w') || '.' || (q->>'a')) THEN
        RETURN page(403, 'text/html; charset=utf-8', head ||
            '<h1>Link not valid</h1><p>This answer link is not valid.</p></body></html>');
    END IF;
    SELECT * INTO i FROM invitees WHERE id::text = q->>'i' AND walk_id::text = q->>'w';
    SELECT * INTO w FROM walks WHERE id = i.walk_id;
    IF i.id IS NULL OR i.removed OR w.status = 'cancelled' THEN
        RETURN page(410, 'text/html; charset=utf-8', head ||
            '<h1>No longer open</h1><p>This walk or invitation no longer stands.</p></body></html>');
    END IF;
    UPDATE invitees SET answer = CASE WHEN q->>'a' = 'accept' THEN 'accepted' ELSE 'declined' END,
        answered_at = now() WHERE id = i.id;
    UPDATE walks SET version = version + 1 WHERE id = w.id;
    PERFORM walk_emit(w.id);
    RETURN page(200, 'text/html; charset=utf-8', head || '<h1>Thank you</h1><p>' ||
        CASE WHEN q->>'a' = 'accept' THEN 'You have accepted' ELSE 'You have declined' END ||
        ' the safety walk &ldquo;' || html(w.title) || '&rdquo; on ' ||
        to_char(w.starts_at AT TIME ZONE 'Europe/Stockholm', 'YYYY-MM-DD "at" HH24:MI') ||
        '.</p></body></html>');
END $$;

-- ---- protocol ----

CREATE FUNCTION protocol_json(w walks, public_view boolean) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('walk', jsonb_build_object('walk_id', w.id, 'title', w.title,
            'area', w.area, 'status', w.status, 'starts_at', w.starts_at, 'ends_at', w.ends_at,
            'after_dark', w.after_dark, 'route_m', round(w.route_m::numeric, 0),
            'rewalk_of', w.rewalk_of),
        'public', public_view,
        'stops', (SELECT coalesce(jsonb_agg(jsonb_build_object('index', i - 1, 'place', s->>'place',
                    'name', s->>'name') ORDER BY i), '[]')
                    FROM jsonb_array_elements(w.stops) WITH ORDINALITY e(s, i)),
        'steps', (SELECT coalesce(jsonb_agg(jsonb_build_object('status', st.status,
                    'date', st.on_date) ORDER BY st.id), '[]') FROM walk_steps st WHERE st.walk_id = w.id),
        'organisations', (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_object('org', i.org,
                    'role', i.role, 'attended', i.answer = 'accepted')), '[]')
                    FROM invitees i WHERE i.walk_id = w.id AND NOT i.removed),
        'findings', (SELECT coalesce(jsonb_agg(finding_json(f) - 'recorded_at' ORDER BY f.stop_index, f.recorded_at), '[]')
                    FROM findings f WHERE f.walk_id = w.id)) ||
    CASE WHEN public_view THEN '{}'::jsonb ELSE jsonb_build_object(
        'participants', (SELECT coalesce(jsonb_agg(jsonb_build_object('name', i.name, 'org', i.org,
            'role', i.role, 'answer', i.answer) ORDER BY i.org, i.name), '[]')
            FROM invitees i WHERE i.walk_id = w.id AND NOT i.removed),
        'step_by', (SELECT coalesce(jsonb_agg(jsonb_build_object('status', st.status, 'by', st.by_name)
            ORDER BY st.id), '[]') FROM walk_steps st WHERE st.walk_id = w.id)) END
$$;

CREATE FUNCTION csv(s text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT '"' || replace(coalesce(s, ''), '"', '""') || '"'
$$;

CREATE FUNCTION protocol_csv(p jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT 'walk_id,stop_index,stop,place,category,severity,' || array_to_string(params(), ',') ||
        ',description,photo_url,night,responsible_kind,responsible,deadline,status,declined_reason,declined_owner' ||
        E'\r\n' || coalesce(string_agg(concat_ws(',', csv(p->'walk'->>'walk_id'), f->>'stop_index',
            csv(p->'stops'->((f->>'stop_index')::int)->>'name'), csv(f->>'place'), csv(f->>'category'),
            f->>'severity',
            (SELECT string_agg(coalesce(f->'scores'->>k, ''), ',' ORDER BY o)
               FROM unnest(params()) WITH ORDINALITY u(k, o)),
            csv(f->>'description'), csv(f->>'photo_url'), f->>'night', csv(f->>'responsible_kind'),
            csv(f->>'responsible'), f->>'deadline', csv(f->>'status'), csv(f->>'declined_reason'),
            csv(f->>'declined_owner')) || E'\r\n', '' ORDER BY n), '')
      FROM jsonb_array_elements(p->'findings') WITH ORDINALITY e(f, n)
$$;

CREATE FUNCTION protocol_html(p jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Protocol: ' ||
        html(p->'walk'->>'title') || '</title><style>'
        '@page{size:A4;margin:18mm 15mm}'
        'body{font-family:Georgia,serif;font-size:11pt;max-width:180mm;margin:1em auto;color:#000}'
        'h1{font-size:16pt}h2{font-size:13pt;margin-top:1.2em;page-break-after:avoid}'
        'table{border-collapse:collapse;width:100%;font-size:9.5pt}'
        'th,td{border:1px solid #777;padding:3px 5px;vertical-align:top;text-align:left}'
        'tr{page-break-inside:avoid}.meta td{border:none;padding:1px 8px 1px 0}'
        '@media print{a{color:#000;text-decoration:none}.noprint{display:none}}'
        '</style></head><body>'
        '<h1>Safety walk protocol: ' || html(p->'walk'->>'title') || '</h1>'
        '<table class="meta"><tr><td>Area</td><td>' || html(p->'walk'->>'area') || '</td></tr>'
        '<tr><td>Walked</td><td>' || html(p->'walk'->>'starts_at') || '</td></tr>'
        '<tr><td>Status</td><td>' || html(p->'walk'->>'status') || '</td></tr>'
        '<tr><td>Route</td><td>' || html(p->'walk'->>'route_m') || ' m, ' ||
            jsonb_array_length(p->'stops') || ' stops</td></tr></table>'
        '<h2>Organisations</h2><ul>' ||
        coalesce((SELECT string_agg('<li>' || html(o->>'org') || ' (' || html(replace(o->>'role', '_', ' ')) || ')</li>', '' ORDER BY o->>'org')
                   FROM jsonb_array_elements(p->'organisations') o), '') || '</ul>' ||
        CASE WHEN p ? 'participants' THEN '<h2>Participants</h2><ul>' ||
            coalesce((SELECT string_agg('<li>' || html(x->>'name') || ', ' || html(x->>'org') || '</li>', '')
                        FROM jsonb_array_elements(p->'participants') x), '') || '</ul>' ELSE '' END ||
        '<h2>Steps</h2><ul>' ||
        coalesce((SELECT string_agg('<li>' || html(s->>'date') || ': ' || html(replace(s->>'status', '_', ' ')) || '</li>', '')
                   FROM jsonb_array_elements(p->'steps') s), '') || '</ul>'
        '<h2>Findings</h2><table><thead><tr><th>Stop</th><th>Category</th><th>Sev.</th>'
        '<th>Description</th><th>Responsible</th><th>Deadline</th><th>Status</th></tr></thead><tbody>' ||
        coalesce((SELECT string_agg('<tr><td>' || html(p->'stops'->((f->>'stop_index')::int)->>'name') ||
            '</td><td>' || html(f->>'category') || '</td><td>' || html(f->>'severity') ||
            '</td><td>' || html(f->>'description') ||
            CASE WHEN f->>'photo_url' IS NOT NULL THEN ' <a href="' || html(f->>'photo_url') || '">photo</a>' ELSE '' END ||
            '</td><td>' || html(f->>'responsible') || '</td><td>' || html(f->>'deadline') ||
            '</td><td>' || html(replace(f->>'status', '_', ' ')) ||
            CASE WHEN f->>'status' = 'declined' THEN ': ' || html(f->>'declined_reason') ||
                ' (owner: ' || html(f->>'declined_owner') || ')' ELSE '' END ||
            '</td></tr>', '' ORDER BY n)
            FROM jsonb_array_elements(p->'findings') WITH ORDINALITY e(f, n)), '') ||
        '</tbody></table></body></html>'
$$;

CREATE FUNCTION api_protocol(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    w walks := the_walk(a);
    pub boolean := coalesce(a->'query'->>'public', '0') IN ('1', 'true');
    p jsonb;
    fmt text := coalesce(a->>'format', 'json');
BEGIN
    IF NOT (pub AND status_rank(w.status) >= status_rank('protocol_published')) THEN
        PERFORM staff(a);
    END IF;
    p := protocol_json(w, pub);
    IF fmt = 'csv' THEN
        RETURN page(200, 'text/csv; charset=utf-8', protocol_csv(p));
    ELSIF fmt = 'html' THEN
        RETURN page(200, 'text/html; charset=utf-8', protocol_html(p));
    END IF;
    RETURN ok(200, p);
END $$;

CREATE FUNCTION api_meta(a jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT ok(200, jsonb_build_object(
        'categories', (SELECT jsonb_agg(jsonb_build_object('code', code, 'name', name) ORDER BY code)
                         FROM categories),
        'parameters', to_jsonb(params()),
        'responsible_kinds', '["district_unit","administration","housing","private"]'::jsonb,
        'statuses', '["proposed","accepted","in_progress","done","verified","not_fixed","declined"]'::jsonb,
        'walk_statuses', '["planned","invitations_sent","pre_meeting_held","walked","protocol_published","follow_up_held","rewalk_done","cancelled"]'::jsonb))
$$;

CREATE FUNCTION api(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    CASE a->>'op'
    WHEN 'meta' THEN RETURN api_meta(a);
    WHEN 'hotspots' THEN RETURN api_hotspots(a);
    WHEN 'proposal' THEN RETURN api_proposal(a);
    WHEN 'walk_create' THEN RETURN api_walk_create(a);
    WHEN 'walk_list' THEN RETURN api_walk_list(a);
    WHEN 'walk_get' THEN RETURN api_walk_get(a);
    WHEN 'walk_patch' THEN RETURN api_walk_patch(a);
    WHEN 'walk_status' THEN RETURN api_walk_status(a);
    WHEN 'rewalk' THEN RETURN api_rewalk(a);
    WHEN 'finding_create' THEN RETURN api_finding_create(a);
    WHEN 'finding_list' THEN RETURN api_finding_list(a);
    WHEN 'finding_get' THEN RETURN api_finding_get(a);
    WHEN 'finding_patch' THEN RETURN api_finding_patch(a);
    WHEN 'finding_verify' THEN RETURN api_finding_verify(a);
    WHEN 'progress' THEN RETURN api_progress(a);
    WHEN 'rsvp' THEN RETURN api_rsvp(a);
    WHEN 'protocol' THEN RETURN api_protocol(a);
    ELSE PERFORM fail(404, 'not_found', NULL, 'unknown operation');
    END CASE;
    RETURN NULL;
END $$;

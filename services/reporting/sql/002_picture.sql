-- The picture (docs/reporting.md): every figure is a sum over the
-- aggregates of 001_init.sql; nothing here reads reports.
--
-- picture() answers the whole document, unsuppressed, for one audience
-- restriction (a partner, or none; public hides sensitive categories below
-- district level). services/reporting/picture.c adds the audience,
-- suppression (suppress.c) and hotspot explanations.

-- The first month start at or after f, and the last at or before t: the
-- whole months of [f, t) are [month_ceil(f), month_floor(t)).
CREATE FUNCTION month_ceil(f date) RETURNS date LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN f = date_trunc('month', f)::date THEN f
                ELSE (date_trunc('month', f) + interval '1 month')::date END
$$;
CREATE FUNCTION month_floor(t date) RETURNS date LANGUAGE sql IMMUTABLE AS $$
    SELECT date_trunc('month', t)::date
$$;

-- Whole months from the month table, ragged edges from the day table
-- (each branch an index range: no day row of a whole month is read).
CREATE FUNCTION counts_in(p_zones text[], p_partner text, f date, t date)
RETURNS TABLE (zone text, bucket date, category text, night boolean, n bigint, repeats bigint,
               reopened bigint)
LANGUAGE sql STABLE AS $$
    SELECT c.zone, c.month, c.category, c.night, c.n, c.repeats, c.reopened
      FROM counts_month c
     WHERE c.zone = ANY (p_zones) AND month_ceil(f) < month_floor(t)
       AND c.month >= month_ceil(f) AND c.month < month_floor(t)
       AND c.partner = coalesce(p_partner, '*')
    UNION ALL
    SELECT c.zone, c.day, c.category, c.night, c.n, c.repeats, c.reopened
      FROM counts_day c
     WHERE c.zone = ANY (p_zones) AND c.day >= f
       AND c.day < CASE WHEN month_ceil(f) < month_floor(t) THEN month_ceil(f) ELSE t END
       AND (p_partner IS NULL OR c.partner = p_partner)
    UNION ALL
    SELECT c.zone, c.day, c.category, c.night, c.n, c.repeats, c.reopened
      FROM counts_day c
     WHERE c.zone = ANY (p_zones) AND month_ceil(f) < month_floor(t)
       AND c.day >= month_floor(t) AND c.day < t
       AND (p_partner IS NULL OR c.partner = p_partner)
$$;

CREATE FUNCTION response_in(p_zone text, f date, t date)
RETURNS TABLE (unit text, category text, kind char, bucket smallint, n bigint, within bigint)
LANGUAGE sql STABLE AS $$
    SELECT r.unit, r.category, r.kind, r.bucket, r.n, r.within FROM response_month r
     WHERE r.zone = p_zone AND month_ceil(f) < month_floor(t)
       AND r.month >= month_ceil(f) AND r.month < month_floor(t)
    UNION ALL
    SELECT r.unit, r.category, r.kind, r.bucket, r.n, r.within FROM response_day r
     WHERE r.zone = p_zone AND r.day >= f
       AND r.day < CASE WHEN month_ceil(f) < month_floor(t) THEN month_ceil(f) ELSE t END
    UNION ALL
    SELECT r.unit, r.category, r.kind, r.bucket, r.n, r.within FROM response_day r
     WHERE r.zone = p_zone AND month_ceil(f) < month_floor(t)
       AND r.day >= month_floor(t) AND r.day < t
$$;

-- A partner's own tasks (per-task rows: a partner's share is small).
CREATE FUNCTION response_partner(p_zone text, p_partner text, f date, t date)
RETURNS TABLE (unit text, category text, kind char, bucket smallint, n bigint, within bigint)
LANGUAGE sql STABLE AS $$
    SELECT tk.unit, tk.category, 'a'::char,
           bucket_of(extract(epoch FROM tk.acked_at - tk.opened_at) / 60), 1::bigint,
           (extract(epoch FROM tk.acked_at - tk.opened_at) / 60 <= tk.ack_target_min)::int::bigint
      FROM tasks tk WHERE tk.partner = p_partner AND tk.day >= f AND tk.day < t
       AND tk.known AND tk.acked_at IS NOT NULL AND p_zone = ANY (tk.zones)
    UNION ALL
    SELECT tk.unit, tk.category, 'd'::char,
           bucket_of(extract(epoch FROM tk.done_at - tk.opened_at) / 60), 1::bigint,
           (extract(epoch FROM tk.done_at - tk.opened_at) / 60 <= tk.done_target_min)::int::bigint
      FROM tasks tk WHERE tk.partner = p_partner AND tk.day >= f AND tk.day < t
       AND tk.known AND tk.done_at IS NOT NULL AND p_zone = ANY (tk.zones)
$$;

-- {"n","median_min","p90_min","within_target_share"} of a histogram: n
-- tasks, the buckets holding the lower median and the 90th percentile,
-- and how many were within target.
CREATE FUNCTION hist_json(n numeric, med int, p90 int, within numeric) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('n', n,
        'median_min', round(bucket_mid(med)::numeric, 1),
        'p90_min', round(bucket_mid(p90)::numeric, 1),
        'within_target_share', round(within / nullif(n, 0), 4))
$$;

CREATE FUNCTION empty_stats() RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT '{"n":0,"median_min":null,"p90_min":null,"within_target_share":null}'::jsonb
$$;

CREATE FUNCTION c3(v numeric, p numeric, l numeric) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('value', coalesce(v, 0), 'previous', coalesce(p, 0),
                              'last_year', coalesce(l, 0))
$$;

-- The period a query names. Raises RPPER for a bad one.
CREATE FUNCTION picture_period(p_kind text, p_at date, p_from date, p_to date,
    OUT f date, OUT t date, OUT label text, OUT pf date, OUT pt date, OUT lf date, OUT lt date)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_kind = 'month' THEN
        f := date_trunc('month', p_at)::date;
        t := (f + interval '1 month')::date;
        label := to_char(f, 'FMMonth YYYY');
        pf := (f - interval '1 month')::date; pt := f;
    ELSIF p_kind = 'quarter' THEN
        f := date_trunc('quarter', p_at)::date;
        t := (f + interval '3 months')::date;
        label := 'Q' || extract(quarter FROM f) || ' ' || extract(year FROM f);
        pf := (f - interval '3 months')::date; pt := f;
    ELSIF p_kind = 'year' THEN
        f := date_trunc('year', p_at)::date;
        t := (f + interval '1 year')::date;
        label := extract(year FROM f)::text;
        pf := (f - interval '1 year')::date; pt := f;
    ELSIF p_kind = 'custom' THEN
        IF p_from IS NULL OR p_to IS NULL OR p_to <= p_from OR p_to - p_from > 3660 THEN
            RAISE EXCEPTION 'custom period needs from < to, at most ten years'
                USING ERRCODE = 'RPPER';
        END IF;
        f := p_from; t := p_to;
        label := to_char(f, 'YYYY-MM-DD') || ' – ' || to_char(t - 1, 'YYYY-MM-DD');
        pf := f - (t - f); pt := f;
    ELSE
        RAISE EXCEPTION 'unknown period %', p_kind USING ERRCODE = 'RPPER';
    END IF;
    lf := (f - interval '1 year')::date;
    lt := (t - interval '1 year')::date;
END $$;

-- The whole picture. p_area: 'district', 'place:<slug>' or 'survey:<slug>'.
-- p_partner: restrict to that partner's reports (NULL: all). p_public:
-- hide sensitive categories below district level.
CREATE FUNCTION picture(p_kind text, p_at date, p_from date, p_to date, p_area text,
    p_partner text, p_public boolean, p_district_name text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    per record;
    v_zone text;
    v_area jsonb;
    v_places text[];
    v_hide boolean;
    v_bucket text;
    v_out jsonb;
    v_survey_zones text[];
    v_part jsonb;
BEGIN
    per := picture_period(p_kind, p_at, p_from, p_to);
    IF p_area = 'district' THEN
        v_zone := '*';
        v_area := jsonb_build_object('kind', 'district', 'slug', 'district', 'name', p_district_name);
        SELECT coalesce(array_agg(slug ORDER BY slug), '{}') INTO v_places FROM places
         WHERE kind = 'place' AND NOT removed;
        SELECT coalesce(array_agg(slug ORDER BY slug), '{}') INTO v_survey_zones FROM survey_areas;
    ELSIF p_area LIKE 'place:%' THEN
        v_zone := substr(p_area, 7);
        SELECT jsonb_build_object('kind', 'place', 'slug', slug, 'name', name) INTO v_area
          FROM places WHERE slug = v_zone AND NOT removed;
        v_places := ARRAY[v_zone];
        SELECT coalesce(array_agg(DISTINCT area), '{}') INTO v_survey_zones FROM survey_area_places
         WHERE place = v_zone;
    ELSIF p_area LIKE 'survey:%' THEN
        v_zone := p_area;
        SELECT jsonb_build_object('kind', 'survey', 'slug', slug, 'name', name) INTO v_area
          FROM survey_areas WHERE slug = substr(p_area, 8);
        SELECT coalesce(array_agg(place ORDER BY place), '{}') INTO v_places
          FROM survey_area_places WHERE area = substr(p_area, 8);
        v_survey_zones := ARRAY[substr(p_area, 8)];
    END IF;
    IF v_area IS NULL THEN
        RAISE EXCEPTION 'unknown area %', p_area USING ERRCODE = 'RPARE';
    END IF;
    v_hide := p_public AND v_zone <> '*';

    v_out := jsonb_build_object(
        'period', jsonb_build_object('kind', p_kind, 'from', per.f, 'to', per.t, 'label', per.label),
        'previous', jsonb_build_object('from', per.pf, 'to', per.pt),
        'last_year', jsonb_build_object('from', per.lf, 'to', per.lt),
        'area', v_area);

    -- Counts of the area itself: totals, by category, by focus area.
    WITH x AS (
        SELECT 0 r, c.* FROM counts_in(ARRAY[v_zone], p_partner, per.f, per.t) c
        UNION ALL SELECT 1, c.* FROM counts_in(ARRAY[v_zone], p_partner, per.pf, per.pt) c
        UNION ALL SELECT 2, c.* FROM counts_in(ARRAY[v_zone], p_partner, per.lf, per.lt) c),
    k AS (SELECT cat.code, cat.name, cat.focus_area, cat.sensitive,
                 sum(x.n) FILTER (WHERE r = 0) v, sum(x.n) FILTER (WHERE r = 1) p,
                 sum(x.n) FILTER (WHERE r = 2) l,
                 sum(x.n) FILTER (WHERE r = 0 AND NOT night) vd,
                 sum(x.n) FILTER (WHERE r = 1 AND NOT night) pd,
                 sum(x.n) FILTER (WHERE r = 2 AND NOT night) ld,
                 sum(x.n) FILTER (WHERE r = 0 AND night) vn,
                 sum(x.n) FILTER (WHERE r = 1 AND night) pn,
                 sum(x.n) FILTER (WHERE r = 2 AND night) ln
            FROM categories cat LEFT JOIN x ON x.category = cat.code
           WHERE NOT (v_hide AND cat.sensitive)
           GROUP BY cat.code, cat.name, cat.focus_area, cat.sensitive)
    SELECT jsonb_build_object(
        'totals', jsonb_build_object(
            'reports', c3(sum(v), sum(p), sum(l)),
            'day', c3(sum(vd), sum(pd), sum(ld)),
            'night', c3(sum(vn), sum(pn), sum(ln))),
        'by_category', coalesce(jsonb_agg(jsonb_build_object('category', code, 'name', name,
            'focus_area', focus_area, 'sensitive', sensitive, 'count', c3(v, p, l),
            'day', c3(vd, pd, ld), 'night', c3(vn, pn, ln))
            ORDER BY coalesce(v, 0) DESC, code), '[]'),
        'by_focus_area', (SELECT coalesce(jsonb_agg(jsonb_build_object('focus_area', fa.code,
                'name', fa.name, 'count', c3(fv, fp, fl)) ORDER BY coalesce(fv, 0) DESC, fa.code), '[]')
              FROM (SELECT fa.code, fa.name, sum(k2.v) fv, sum(k2.p) fp, sum(k2.l) fl
                      FROM focus_areas fa LEFT JOIN k k2 ON k2.focus_area = fa.code
                     GROUP BY fa.code, fa.name) fa))
      INTO v_part FROM k;
    v_out := v_out || v_part;

    -- By place (always below district level: public hides sensitive).
    WITH x AS (
        SELECT 0 r, c.* FROM counts_in(v_places, p_partner, per.f, per.t) c
        UNION ALL SELECT 1, c.* FROM counts_in(v_places, p_partner, per.pf, per.pt) c
        UNION ALL SELECT 2, c.* FROM counts_in(v_places, p_partner, per.lf, per.lt) c),
    k AS (SELECT pl.slug, pl.name,
                 sum(x.n) FILTER (WHERE r = 0) v, sum(x.n) FILTER (WHERE r = 1) p,
                 sum(x.n) FILTER (WHERE r = 2) l,
                 sum(x.n) FILTER (WHERE r = 0 AND NOT night) vd,
                 sum(x.n) FILTER (WHERE r = 1 AND NOT night) pd,
                 sum(x.n) FILTER (WHERE r = 2 AND NOT night) ld,
                 sum(x.n) FILTER (WHERE r = 0 AND night) vn,
                 sum(x.n) FILTER (WHERE r = 1 AND night) pn,
                 sum(x.n) FILTER (WHERE r = 2 AND night) ln,
                 coalesce(sum(x.repeats) FILTER (WHERE r = 0), 0) rep,
                 coalesce(sum(x.reopened) FILTER (WHERE r = 0), 0) reo,
                 coalesce(sum(x.n) FILTER (WHERE r = 0 AND x.category = 'lighting'), 0) light
            FROM places pl
            LEFT JOIN x ON x.zone = pl.slug
                AND NOT (p_public AND x.category IN (SELECT code FROM categories WHERE sensitive))
           WHERE pl.slug = ANY (v_places)
           GROUP BY pl.slug, pl.name)
    SELECT jsonb_build_object(
        'by_place', coalesce(jsonb_agg(jsonb_build_object('place', slug, 'name', name,
            'count', c3(v, p, l), 'day', c3(vd, pd, ld), 'night', c3(vn, pn, ln),
            'repeat_reports', rep, 'reopened', reo) ORDER BY coalesce(v, 0) DESC, slug), '[]'),
        'hotspots', coalesce((SELECT jsonb_agg(h ORDER BY (h->>'rank')::int) FROM (
            SELECT jsonb_build_object('rank', row_number() OVER (ORDER BY s DESC, slug),
                'place', slug, 'name', name, 'score', s, 'reports', v, 'night', coalesce(vn, 0),
                'repeat_reports', rep, 'reopened', reo, 'lighting', light,
                'survey_worry', (SELECT sf.value FROM survey_figures sf
                                   JOIN survey_area_places sp ON sp.area = sf.area
                                  WHERE sp.place = k2.slug AND sf.indicator = 'worry_late_evening'
                                  ORDER BY sf.year DESC, sf.area LIMIT 1)) h
              FROM (SELECT k.*, round((coalesce(v, 0) + 0.5 * coalesce(vn, 0) + rep + 2 * reo)::numeric, 1) s
                      FROM k WHERE coalesce(v, 0) > 0 ORDER BY s DESC, slug LIMIT 10) k2) hh), '[]'))
      INTO v_part FROM k;
    v_out := v_out || v_part;

    -- Trend over the period (current period only).
    v_bucket := CASE WHEN p_kind = 'month' THEN 'day' WHEN p_kind = 'quarter' THEN 'week'
                     WHEN p_kind = 'year' THEN 'month'
                     WHEN per.t - per.f <= 62 THEN 'day' WHEN per.t - per.f <= 190 THEN 'week'
                     ELSE 'month' END;
    IF v_bucket = 'month' THEN
        WITH s AS (SELECT date_trunc('month', g)::date b
                     FROM generate_series(date_trunc('month', per.f), per.t - 1, interval '1 month') g),
             x AS (SELECT date_trunc('month', c.bucket)::date b, sum(n) n,
                          sum(n) FILTER (WHERE night) nn
                     FROM counts_in(ARRAY[v_zone], p_partner, per.f, per.t) c
                    WHERE NOT (v_hide AND c.category IN (SELECT code FROM categories WHERE sensitive))
                    GROUP BY 1)
        SELECT jsonb_build_object('bucket', 'month', 'series', jsonb_agg(jsonb_build_object(
                   'start', greatest(s.b, per.f), 'count', coalesce(x.n, 0),
                   'night', coalesce(x.nn, 0)) ORDER BY s.b))
          INTO v_part FROM s LEFT JOIN x ON x.b = s.b;
    ELSE
        WITH s AS (SELECT CASE v_bucket WHEN 'week' THEN date_trunc('week', g) ELSE g END::date b
                     FROM generate_series(per.f, per.t - 1,
                          CASE v_bucket WHEN 'week' THEN interval '1 week' ELSE interval '1 day' END) g),
             x AS (SELECT CASE v_bucket WHEN 'week' THEN date_trunc('week', c.day) ELSE c.day END::date b,
                          sum(n) n, sum(n) FILTER (WHERE night) nn
                     FROM counts_day c WHERE c.zone = v_zone AND c.day >= per.f AND c.day < per.t
                      AND (p_partner IS NULL OR c.partner = p_partner)
                      AND NOT (v_hide AND c.category IN (SELECT code FROM categories WHERE sensitive))
                    GROUP BY 1)
        SELECT jsonb_build_object('bucket', v_bucket, 'series', jsonb_agg(jsonb_build_object(
                   'start', greatest(s.b, per.f), 'count', coalesce(x.n, 0),
                   'night', coalesce(x.nn, 0)) ORDER BY s.b))
          INTO v_part FROM (SELECT DISTINCT b FROM s) s LEFT JOIN x ON x.b = s.b;
    END IF;
    v_out := v_out || jsonb_build_object('trend', v_part);

    -- Response times against targets (tasks whose report falls in the period).
    WITH h AS (
        SELECT * FROM response_in(v_zone, per.f, per.t) WHERE p_partner IS NULL
        UNION ALL
        SELECT * FROM response_partner(v_zone, p_partner, per.f, per.t) WHERE p_partner IS NOT NULL),
    g AS (SELECT CASE WHEN GROUPING(unit) = 0 THEN 'unit' WHEN GROUPING(category) = 0
                      THEN 'category' ELSE 'all' END g,
                 coalesce(CASE WHEN GROUPING(unit) = 0 THEN unit ELSE category END, '') k,
                 kind, bucket, sum(n) n, sum(within) w
            FROM h
           WHERE NOT v_hide OR h.category NOT IN (SELECT code FROM categories WHERE sensitive)
           GROUP BY GROUPING SETS ((kind, bucket), (unit, kind, bucket), (category, kind, bucket))),
    c AS (SELECT g.*, sum(n) OVER (PARTITION BY g, k, kind ORDER BY bucket) cum,
                 sum(n) OVER (PARTITION BY g, k, kind) tot FROM g),
    st AS MATERIALIZED (SELECT g, k, kind, hist_json(max(tot), min(bucket) FILTER (WHERE cum >= 0.5 * tot),
                       min(bucket) FILTER (WHERE cum >= 0.9 * tot), sum(w)) stats
           FROM c GROUP BY g, k, kind),
    od AS (SELECT t.unit, count(*) n FROM open_tasks t
            WHERE t.due_at < now()
              AND v_zone = ANY (t.zones) AND (p_partner IS NULL OR t.partner = p_partner)
              AND NOT (v_hide AND t.category IN (SELECT code FROM categories WHERE sensitive))
            GROUP BY t.unit)
    SELECT jsonb_build_object(
        'ack', coalesce((SELECT stats FROM st WHERE g = 'all' AND kind = 'a'), empty_stats()),
        'done', coalesce((SELECT stats FROM st WHERE g = 'all' AND kind = 'd'), empty_stats()),
        'overdue_now', (SELECT coalesce(sum(n), 0) FROM od),
        'by_unit', (SELECT coalesce(jsonb_agg(jsonb_build_object('unit', u,
                'ack', coalesce((SELECT stats FROM st WHERE g = 'unit' AND k = u AND kind = 'a'), empty_stats()),
                'done', coalesce((SELECT stats FROM st WHERE g = 'unit' AND k = u AND kind = 'd'), empty_stats()),
                'overdue_now', coalesce((SELECT n FROM od WHERE od.unit = u), 0)) ORDER BY u), '[]')
              FROM (SELECT k u FROM st WHERE g = 'unit' UNION SELECT unit FROM od) us),
        'by_category', (SELECT coalesce(jsonb_agg(jsonb_build_object('category', c.code,
                'target_min', c.target_min,
                'ack', coalesce((SELECT stats FROM st WHERE g = 'category' AND k = c.code AND kind = 'a'), empty_stats()),
                'done', coalesce((SELECT stats FROM st WHERE g = 'category' AND k = c.code AND kind = 'd'), empty_stats()))
                ORDER BY c.code), '[]')
              FROM categories c WHERE c.code IN (SELECT k FROM st WHERE g = 'category')))
      INTO v_part;
    v_out := v_out || jsonb_build_object('response', v_part);

    -- Walks and their findings (recorded in the period, in the area).
    WITH w AS (SELECT * FROM walks WHERE starts_at >= per.f AND starts_at < per.t
                 AND (v_zone = '*' OR area = v_zone OR area = substr(v_zone, 8)
                      OR places && v_places) AND status <> 'cancelled'),
         fi AS (SELECT f.* FROM findings f WHERE f.recorded_at >= per.f AND f.recorded_at < per.t
                  AND (v_zone = '*' OR f.place = ANY (v_places)
                       OR f.walk_id IN (SELECT walk_id FROM walks WHERE area = v_zone OR area = substr(v_zone, 8))))
    SELECT jsonb_build_object(
        'walks', (SELECT count(*) FROM w),
        'findings', (SELECT count(*) FROM fi),
        'by_status', (SELECT coalesce(jsonb_object_agg(status, n), '{}')
                        FROM (SELECT status, count(*) n FROM fi GROUP BY status) s),
        'done_within_6_months_share', (SELECT round(count(*) FILTER (WHERE done_at IS NOT NULL
                 AND done_at <= recorded_at + interval '6 months')::numeric / nullif(count(*), 0), 4) FROM fi),
        'overdue', (SELECT count(*) FROM fi WHERE status NOT IN ('done', 'verified', 'declined')
                      AND deadline < now()),
        'declined', (SELECT coalesce(jsonb_agg(jsonb_build_object('owner', o, 'count', n)
                        ORDER BY n DESC, o), '[]')
                       FROM (SELECT coalesce(nullif(declined_owner, ''), 'unknown') o, count(*) n
                               FROM fi WHERE status = 'declined' GROUP BY 1) d))
      INTO v_part;
    v_out := v_out || jsonb_build_object('walks', v_part);

    -- Survey indicators beside the reports of the same areas.
    WITH a AS (SELECT sa.slug, sa.name FROM survey_areas sa WHERE sa.slug = ANY (v_survey_zones)),
         latest AS (SELECT DISTINCT ON (sf.area, sf.survey) sf.area, sf.survey, sf.year
                      FROM survey_figures sf ORDER BY sf.area, sf.survey, sf.year DESC),
         x AS (SELECT 0 r, c.* FROM counts_in((SELECT array_agg('survey:' || slug) FROM a), p_partner, per.f, per.t) c
               UNION ALL SELECT 1, c.* FROM counts_in((SELECT array_agg('survey:' || slug) FROM a), p_partner, per.pf, per.pt) c
               UNION ALL SELECT 2, c.* FROM counts_in((SELECT array_agg('survey:' || slug) FROM a), p_partner, per.lf, per.lt) c),
         xs AS (SELECT zone, sum(n) FILTER (WHERE r = 0) v, sum(n) FILTER (WHERE r = 1) p,
                       sum(n) FILTER (WHERE r = 2) l FROM x
                 WHERE NOT (p_public AND x.category IN (SELECT code FROM categories WHERE sensitive))
                 GROUP BY zone)
    SELECT coalesce(jsonb_agg(jsonb_build_object('area', a.slug, 'name', a.name,
               'survey', lt.survey, 'year', lt.year,
               'illustrative', (SELECT bool_or(illustrative) FROM survey_figures sf
                                 WHERE sf.area = a.slug AND sf.survey = lt.survey AND sf.year = lt.year),
               'indicators', (SELECT coalesce(jsonb_agg(jsonb_build_object('indicator', indicator,
                                  'value', value, 'unit', unit) ORDER BY indicator), '[]')
                                FROM survey_figures sf
                               WHERE sf.area = a.slug AND sf.survey = lt.survey AND sf.year = lt.year),
               'reports', c3(xs.v, xs.p, xs.l)) ORDER BY a.slug, lt.survey), '[]')
      INTO v_part
      FROM a LEFT JOIN latest lt ON lt.area = a.slug LEFT JOIN xs ON xs.zone = 'survey:' || a.slug;
    v_out := v_out || jsonb_build_object('survey', v_part);

    SELECT coalesce(jsonb_object_agg(section, text), '{}') INTO v_part FROM comments
     WHERE period_from = per.f AND period_to = per.t AND area = p_area;
    v_out := v_out || jsonb_build_object('comments', v_part, 'version', NULL);
    RETURN v_out;
END $$;

-- The places as a GeoJSON FeatureCollection (figures are merged in by C).
CREATE FUNCTION places_geojson() RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('type', 'FeatureCollection', 'features',
        coalesce(jsonb_agg(jsonb_build_object('type', 'Feature', 'geometry', geometry,
            'properties', jsonb_build_object('slug', slug, 'name', name, 'kind', kind))
            ORDER BY kind, slug), '[]'))
      FROM places WHERE NOT removed
$$;

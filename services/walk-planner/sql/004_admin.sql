-- walk-planner: what the operator commands do (services/walk-planner/admin.c).

-- `admin survey load`: areas from a GeoJSON FeatureCollection (properties
-- slug and name), figures from CSV text with the header
-- area,indicator,value,unit[,respondents] (plain fields, no quoted commas).
-- Replaces the figures of (survey, year) and publishes SurveyFiguresLoaded.
CREATE FUNCTION survey_load(p_csv text, p_areas jsonb, p_survey text, p_year int,
    p_illustrative boolean, p_source text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    f jsonb;
    line text;
    cols text[];
    n int := 0;
    lno int := 0;
    v float8;
    areas bytea := '';
    figs bytea := '';
    r record;
BEGIN
    IF p_areas IS NULL OR jsonb_typeof(p_areas->'features') <> 'array' THEN
        RAISE EXCEPTION 'the areas file is not a GeoJSON FeatureCollection';
    END IF;
    FOR f IN SELECT * FROM jsonb_array_elements(p_areas->'features') LOOP
        IF coalesce(f->'properties'->>'slug', '') = '' OR outer_ring(f->'geometry') IS NULL THEN
            RAISE EXCEPTION 'every area needs properties.slug and a Polygon or MultiPolygon geometry';
        END IF;
        INSERT INTO survey_areas VALUES (f->'properties'->>'slug',
            coalesce(f->'properties'->>'name', f->'properties'->>'slug'), f->'geometry')
        ON CONFLICT (slug) DO UPDATE SET name = excluded.name, geojson = excluded.geojson;
    END LOOP;
    UPDATE places SET area = area_of(lat, long);
    DELETE FROM survey_figures WHERE survey = p_survey AND year = p_year;
    FOR line IN SELECT l FROM regexp_split_to_table(p_csv, E'\r?\n') l LOOP
        lno := lno + 1;
        CONTINUE WHEN btrim(line) = '' OR line LIKE '#%';
        cols := string_to_array(line, ',');
        IF lno = 1 OR cols[1] = 'area' THEN
            IF cols[1:4] <> ARRAY['area', 'indicator', 'value', 'unit'] THEN
                RAISE EXCEPTION 'line %: the header must be area,indicator,value,unit[,respondents]', lno;
            END IF;
            CONTINUE;
        END IF;
        IF array_length(cols, 1) NOT IN (4, 5) THEN
            RAISE EXCEPTION 'line %: expected 4 or 5 fields', lno;
        END IF;
        IF NOT EXISTS (SELECT 1 FROM survey_areas WHERE slug = btrim(cols[1])) THEN
            RAISE EXCEPTION 'line %: unknown area %', lno, cols[1];
        END IF;
        IF btrim(cols[2]) NOT IN ('worry_late_evening', 'disorder_litter', 'disorder_dark_areas',
                'disorder_graffiti', 'disorder_drugs_public', 'victimisation', 'police_index') THEN
            RAISE EXCEPTION 'line %: unknown indicator % (worry_late_evening, disorder_litter, '
                'disorder_dark_areas, disorder_graffiti, disorder_drugs_public, victimisation, '
                'police_index)', lno, cols[2];
        END IF;
        BEGIN
            v := btrim(cols[3])::float8;
        EXCEPTION WHEN others THEN
            RAISE EXCEPTION 'line %: value % is not a number', lno, cols[3];
        END;
        IF btrim(cols[4]) NOT IN ('percent', 'index') THEN
            RAISE EXCEPTION 'line %: unit must be percent or index', lno;
        END IF;
        INSERT INTO survey_figures (survey, year, area, indicator, value, unit, respondents,
            illustrative, source)
        VALUES (p_survey, p_year, btrim(cols[1]), btrim(cols[2]), v, btrim(cols[4]),
            coalesce(nullif(btrim(cols[5]), '')::int, 0), p_illustrative, coalesce(p_source, ''));
        n := n + 1;
    END LOOP;
    FOR r IN SELECT * FROM survey_areas WHERE slug IN
            (SELECT area FROM survey_figures WHERE survey = p_survey AND year = p_year) ORDER BY slug LOOP
        areas := areas || pb_len(5, pb_str(1, r.slug) || pb_str(2, r.name) || pb_str(3, r.geojson::text));
    END LOOP;
    FOR r IN SELECT * FROM survey_figures WHERE survey = p_survey AND year = p_year
              ORDER BY area, indicator LOOP
        figs := figs || pb_len(6, pb_str(1, r.area) || pb_str(2, r.indicator) ||
            pb_double(3, r.value) || pb_str(4, r.unit) || pb_int(5, r.respondents));
    END LOOP;
    PERFORM emit('trygg.walks.SurveyFiguresLoaded', pb_str(1, p_survey) || pb_int(2, p_year) ||
        pb_str(3, p_source) || pb_bool(4, p_illustrative) || areas || figs || pb_int(7, us(now())));
    RETURN n;
END $$;

CREATE FUNCTION places_load(p jsonb) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    f jsonb;
    n int := 0;
BEGIN
    IF p IS NULL OR jsonb_typeof(p->'features') <> 'array' THEN
        RAISE EXCEPTION 'not a GeoJSON FeatureCollection';
    END IF;
    FOR f IN SELECT * FROM jsonb_array_elements(p->'features') LOOP
        IF coalesce(f->'properties'->>'slug', '') = '' OR outer_ring(f->'geometry') IS NULL THEN
            RAISE EXCEPTION 'every feature needs properties.slug and a Polygon or MultiPolygon geometry';
        END IF;
        PERFORM place_define(f->'properties'->>'slug', f->'properties'->>'name',
            (f->'geometry')::text, false, 'admin');
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

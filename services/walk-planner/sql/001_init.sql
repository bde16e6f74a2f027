-- walk-planner's schema (issue 10; docs/walk-planner.md).
--
-- Three parts:
--   * its own view of what happens, built from intake's and the notifier's
--     streams through inboxes: places, report aggregates per place,
--     category, local day and day/night, task aggregates (opened, reopened);
--     survey figures and areas loaded by the operator;
--   * walks, invitees, findings and their histories;
--   * protobuf encoders, so the events (walks.proto) go into the outbox in
--     the same statement, hence the same transaction, as the change.
-- Each HTTP request is one call of api(): see 002_api.sql.

CREATE TABLE secrets (
    name  text PRIMARY KEY,
    value text NOT NULL
);
-- HMAC key for signed links and per-walk keys (never leaves the schema).
INSERT INTO secrets VALUES ('link', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));

CREATE TABLE categories (
    code      text PRIMARY KEY,
    name      text NOT NULL,
    sensitive boolean NOT NULL DEFAULT false
);
INSERT INTO categories VALUES
 ('litter', 'Litter', false), ('graffiti', 'Graffiti', false),
 ('graffiti_offensive', 'Offensive graffiti', false), ('vandalism', 'Vandalism', false),
 ('lighting', 'Broken lighting', false), ('vegetation', 'Overgrown vegetation', false),
 ('traffic', 'Traffic hazard', false), ('sleeping_outdoors', 'Sleeping outdoors', false),
 ('drug_dealing', 'Drug dealing', true), ('school_incident', 'School incident', true),
 ('youth_at_risk', 'Youth at risk', true), ('vulnerable_victim', 'Vulnerable victim', true),
 ('other', 'Other', false);

-- Places: from PlaceDefined (source 'event'), `admin places load`
-- ('admin'), or named in a report before either ('report'). lat/long is the
-- centroid of the polygon (or, for a place only seen in reports, the first
-- report position there).
CREATE TABLE places (
    slug       text PRIMARY KEY,
    name       text NOT NULL,
    geojson    jsonb,
    lat        double precision,
    long       double precision,
    source     text NOT NULL,
    container  boolean NOT NULL DEFAULT false, -- holds other places (a district): never a hotspot
    area       text,                           -- the survey area its centre lies in
    removed    boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE survey_areas (
    slug    text PRIMARY KEY,
    name    text NOT NULL,
    geojson jsonb NOT NULL
);

CREATE TABLE survey_figures (
    survey       text NOT NULL,
    year         int NOT NULL,
    area         text NOT NULL REFERENCES survey_areas,
    indicator    text NOT NULL,
    value        double precision NOT NULL,
    unit         text NOT NULL,
    respondents  int NOT NULL DEFAULT 0,
    illustrative boolean NOT NULL,
    source       text NOT NULL DEFAULT '',
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (survey, year, area, indicator)
);

-- One row per place (or '' without one), category and local day: reports,
-- of them after dark, and their severities; and the same per ISO week
-- (Monday), with the number of days that had reports, so a window reads
-- whole weeks from agg_weeks and at most six days at each edge from
-- agg_reports (docs/walk-planner.md, "Speed").
CREATE TABLE agg_reports (
    place        text NOT NULL,
    category     text NOT NULL,
    day          date NOT NULL,
    reports      int NOT NULL,
    night        int NOT NULL,
    severity_sum int NOT NULL,
    PRIMARY KEY (place, category, day)
);
CREATE INDEX agg_reports_day ON agg_reports (day) INCLUDE (place, category, reports, night, severity_sum);

CREATE TABLE agg_weeks (
    place        text NOT NULL,
    category     text NOT NULL,
    week         date NOT NULL,
    reports      int NOT NULL,
    night        int NOT NULL,
    severity_sum int NOT NULL,
    days         int NOT NULL,
    PRIMARY KEY (place, category, week)
);
CREATE INDEX agg_weeks_week ON agg_weeks (week) INCLUDE (place, category, reports, night, severity_sum, days);

-- Tasks as the notifier reports them: which report opened each (a report id
-- or a finding id), and its place and category for reopen counts.
CREATE TABLE tasks (
    task_id      text PRIMARY KEY,
    report_id    text,
    place        text NOT NULL DEFAULT '',
    category     text NOT NULL DEFAULT '',
    status       text NOT NULL DEFAULT 'open',
    opened_at    timestamptz,
    completed_at timestamptz
);
CREATE INDEX tasks_report ON tasks (report_id);
CREATE INDEX tasks_place ON tasks (place, category, completed_at);

CREATE TABLE agg_tasks (
    place    text NOT NULL,
    category text NOT NULL,
    day      date NOT NULL,
    opened   int NOT NULL DEFAULT 0,
    reopened int NOT NULL DEFAULT 0,
    PRIMARY KEY (place, category, day)
);
CREATE INDEX agg_tasks_reopened ON agg_tasks (day) WHERE reopened > 0;

CREATE TABLE staff_keys (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    key_hash   text NOT NULL UNIQUE,
    prefix     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE participants (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    org        text NOT NULL,
    role       text NOT NULL CHECK (role IN ('district_official', 'police', 'housing', 'business',
                   'residents_association', 'school')),
    email      text NOT NULL,
    places     text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (email, org)
);

CREATE TABLE walks (
    id           uuid PRIMARY KEY,
    version      bigint NOT NULL DEFAULT 1,
    title        text NOT NULL,
    area         text NOT NULL,
    status       text NOT NULL DEFAULT 'planned',
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    after_dark   boolean NOT NULL DEFAULT false,
    stops        jsonb NOT NULL DEFAULT '[]',
    route_m      double precision NOT NULL DEFAULT 0,
    rewalk_of    uuid REFERENCES walks,
    ics_sequence int NOT NULL DEFAULT 0,
    invited      boolean NOT NULL DEFAULT false, -- invitations went out
    organizer    text NOT NULL DEFAULT '',
    organizer_email text NOT NULL DEFAULT '',
    notes        text NOT NULL DEFAULT '',
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE walk_steps (
    id      bigserial PRIMARY KEY,
    walk_id uuid NOT NULL REFERENCES walks,
    status  text NOT NULL,
    on_date date NOT NULL,
    by_name text NOT NULL,
    note    text NOT NULL DEFAULT '',
    at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE invitees (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    walk_id        uuid NOT NULL REFERENCES walks,
    participant_id uuid REFERENCES participants,
    name           text NOT NULL,
    org            text NOT NULL,
    role           text NOT NULL,
    email          text NOT NULL,
    answer         text NOT NULL DEFAULT 'pending',
    answered_at    timestamptz,
    removed        boolean NOT NULL DEFAULT false
);
CREATE INDEX invitees_walk ON invitees (walk_id);

CREATE TABLE mails (
    mail_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    walk_id    uuid,
    to_address text NOT NULL,
    kind       text NOT NULL,
    subject    text NOT NULL,
    body_text  text NOT NULL,
    attachment text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE findings (
    id               uuid PRIMARY KEY,
    walk_id          uuid NOT NULL REFERENCES walks,
    version          bigint NOT NULL DEFAULT 1,
    stop_index       int NOT NULL,
    place            text NOT NULL DEFAULT '',
    category         text NOT NULL,
    severity         int NOT NULL,
    scores           int[] NOT NULL, -- nine, -1 = not scored
    description      text NOT NULL DEFAULT '',
    photo_url        text,
    lat              double precision,
    long             double precision,
    night            boolean NOT NULL DEFAULT false,
    responsible_kind text NOT NULL,
    responsible      text NOT NULL,
    deadline         date NOT NULL,
    status           text NOT NULL DEFAULT 'proposed',
    declined_reason  text,
    declined_owner   text,
    verified_photo_url text,
    verified_in      uuid,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    status_at        timestamptz NOT NULL DEFAULT now(),
    idem_key         text NOT NULL,
    idem_hash        text NOT NULL,
    UNIQUE (walk_id, idem_key)
);
CREATE INDEX findings_walk ON findings (walk_id);

CREATE TABLE finding_steps (
    id         bigserial PRIMARY KEY,
    finding_id uuid NOT NULL REFERENCES findings,
    status     text NOT NULL,
    by_name    text NOT NULL,
    note       text NOT NULL DEFAULT '',
    at         timestamptz NOT NULL DEFAULT now()
);

-- ---- protobuf encoding (proto3 wire format) ----

CREATE FUNCTION pb_varint(v numeric) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    o bytea := '';
    b int;
BEGIN
    IF v < 0 THEN
        v := v + 18446744073709551616;
    END IF;
    LOOP
        b := (v % 128)::int;
        v := div(v, 128);
        IF v > 0 THEN
            o := o || set_byte('\x00'::bytea, 0, b | 128);
        ELSE
            RETURN o || set_byte('\x00'::bytea, 0, b);
        END IF;
    END LOOP;
END $$;

CREATE FUNCTION pb_len(f int, b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT pb_varint(f * 8 + 2) || pb_varint(length(b)) || b
$$;
-- proto3 leaves default values out.
CREATE FUNCTION pb_str(f int, s text) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN s IS NULL OR s = '' THEN ''::bytea ELSE pb_len(f, convert_to(s, 'UTF8')) END
$$;
CREATE FUNCTION pb_bytes(f int, b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN b IS NULL OR length(b) = 0 THEN ''::bytea ELSE pb_len(f, b) END
$$;
CREATE FUNCTION pb_int(f int, v numeric) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IS NULL OR v = 0 THEN ''::bytea ELSE pb_varint(f * 8) || pb_varint(v) END
$$;
CREATE FUNCTION pb_bool(f int, v boolean) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v THEN pb_varint(f * 8) || '\x01'::bytea ELSE ''::bytea END
$$;
-- A double is 8 bytes little-endian; float8send gives big-endian.
CREATE FUNCTION pb_double(f int, v double precision) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IS NULL OR v = 0 THEN ''::bytea ELSE pb_varint(f * 8 + 1) ||
        (SELECT string_agg(substr(float8send(v), 9 - i, 1), ''::bytea ORDER BY i)
           FROM generate_series(1, 8) i) END
$$;
CREATE FUNCTION pb_packed(f int, vs int[]) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN coalesce(array_length(vs, 1), 0) = 0 THEN ''::bytea ELSE
        pb_len(f, (SELECT string_agg(pb_varint(v), ''::bytea ORDER BY i)
                     FROM unnest(vs) WITH ORDINALITY u(v, i))) END
$$;
CREATE FUNCTION us(t timestamptz) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT (extract(epoch FROM t) * 1000000)::bigint
$$;

CREATE FUNCTION emit(etype text, payload bytea) RETURNS void LANGUAGE sql AS $$
    INSERT INTO outbox (event_type, payload) VALUES (etype, payload)
$$;

-- ---- HMAC-SHA256 (RFC 2104) on the built-in sha256() ----

CREATE FUNCTION hmac_hex(key text, msg text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    k bytea := convert_to(key, 'UTF8');
    ik bytea;
    ok bytea;
BEGIN
    IF length(k) > 64 THEN
        k := sha256(k);
    END IF;
    k := k || decode(repeat('00', 64 - length(k)), 'hex');
    ik := k;
    ok := k;
    FOR i IN 0..63 LOOP
        ik := set_byte(ik, i, get_byte(k, i) # 54);
        ok := set_byte(ok, i, get_byte(k, i) # 92);
    END LOOP;
    RETURN encode(sha256(ok || sha256(ik || convert_to(msg, 'UTF8'))), 'hex');
END $$;

CREATE FUNCTION sign(msg text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT hmac_hex((SELECT value FROM secrets WHERE name = 'link'), msg)
$$;

-- The per-walk key of the phone page: derived, so it is never stored.
CREATE FUNCTION walk_key(w uuid) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT 'wk_' || left(sign('walk-key.' || w::text), 40)
$$;

-- ---- geometry (WGS84 degrees; small areas, so plane formulas suffice) ----

-- The outer ring of a Polygon, or of the first part of a MultiPolygon.
CREATE FUNCTION outer_ring(g jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE g->>'type' WHEN 'Polygon' THEN g->'coordinates'->0
        WHEN 'MultiPolygon' THEN g->'coordinates'->0->0 END
$$;

-- Centroid as the mean of the ring's vertices (the closing vertex once).
CREATE FUNCTION ring_centre(g jsonb, OUT lat double precision, OUT long double precision)
LANGUAGE sql IMMUTABLE AS $$
    SELECT avg((p->>1)::float8), avg((p->>0)::float8)
      FROM jsonb_array_elements(outer_ring(g)) WITH ORDINALITY r(p, i)
     WHERE i < jsonb_array_length(outer_ring(g))
        OR (outer_ring(g)->0) <> (outer_ring(g)->-1)
$$;

-- Ray casting over every polygon of g (holes ignored).
CREATE FUNCTION point_in(g jsonb, plat double precision, plong double precision) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    ring jsonb;
    n int;
    inside boolean := false;
    xi float8; yi float8; xj float8; yj float8;
BEGIN
    IF g IS NULL OR plat IS NULL THEN
        RETURN false;
    END IF;
    FOR ring IN SELECT CASE g->>'type' WHEN 'Polygon' THEN g->'coordinates'->0
                 ELSE p->0 END
                 FROM jsonb_array_elements(CASE g->>'type' WHEN 'Polygon' THEN '[0]'::jsonb
                      ELSE g->'coordinates' END) p LOOP
        n := jsonb_array_length(ring);
        inside := false;
        FOR i IN 0..n - 1 LOOP
            xi := (ring->i->>0)::float8; yi := (ring->i->>1)::float8;
            xj := (ring->((i + n - 1) % n)->>0)::float8; yj := (ring->((i + n - 1) % n)->>1)::float8;
            IF ((yi > plat) <> (yj > plat)) AND
               (plong < (xj - xi) * (plat - yi) / (yj - yi) + xi) THEN
                inside := NOT inside;
            END IF;
        END LOOP;
        IF inside THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END $$;

-- Great-circle distance in metres.
CREATE FUNCTION haversine_m(lat1 float8, lon1 float8, lat2 float8, lon2 float8) RETURNS float8
LANGUAGE sql IMMUTABLE AS $$
    SELECT 2 * 6371008.8 * asin(sqrt(power(sin(radians(lat2 - lat1) / 2), 2) +
        cos(radians(lat1)) * cos(radians(lat2)) * power(sin(radians(lon2 - lon1) / 2), 2)))
$$;

-- The survey area a point lies in (first by slug), or NULL.
CREATE FUNCTION area_of(plat float8, plong float8) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT slug FROM survey_areas WHERE point_in(geojson, plat, plong) ORDER BY slug LIMIT 1
$$;

CREATE FUNCTION local_day(t timestamptz) RETURNS date LANGUAGE sql IMMUTABLE AS $$
    SELECT (t AT TIME ZONE 'Europe/Stockholm')::date
$$;

-- ---- effects of consumed events (the inboxes call these) ----

CREATE FUNCTION place_define(p_slug text, p_name text, p_geojson text, p_removed boolean,
    p_source text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    g jsonb := nullif(p_geojson, '')::jsonb;
    c record;
BEGIN
    IF p_slug IS NULL OR p_slug = '' THEN
        RETURN;
    END IF;
    SELECT * INTO c FROM ring_centre(g);
    INSERT INTO places AS p (slug, name, geojson, lat, long, source, removed)
    VALUES (p_slug, coalesce(nullif(p_name, ''), p_slug), g, c.lat, c.long, p_source, p_removed)
    ON CONFLICT (slug) DO UPDATE SET
        name = CASE WHEN excluded.name <> excluded.slug THEN excluded.name ELSE p.name END,
        geojson = coalesce(excluded.geojson, p.geojson),
        lat = coalesce(excluded.lat, p.lat), long = coalesce(excluded.long, p.long),
        source = excluded.source, removed = excluded.removed, updated_at = now()
    -- intake's PlaceDefined wins over the operator's fallback file
    WHERE NOT (p.source = 'event' AND excluded.source = 'admin');
    -- A polygon that holds two or more other places is an area (the
    -- district), never a hotspot itself.
    UPDATE places o SET container = (SELECT count(*) FROM places q WHERE q.slug <> o.slug
        AND q.lat IS NOT NULL AND point_in(o.geojson, q.lat, q.long)) >= 2
     WHERE o.geojson IS NOT NULL;
    UPDATE places SET area = area_of(lat, long) WHERE slug = p_slug;
END $$;

CREATE FUNCTION report_apply(p_places text[], p_category text, p_severity int, p_night boolean,
    p_at_us bigint, p_lat float8, p_long float8) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d date := local_day(to_timestamp(p_at_us / 1e6));
    pl text;
    fresh boolean; -- the first report of its place, category and day
BEGIN
    IF coalesce(array_length(p_places, 1), 0) = 0 THEN
        p_places := ARRAY[''];
    END IF;
    FOREACH pl IN ARRAY p_places LOOP
        INSERT INTO agg_reports AS a VALUES (pl, p_category, d, 1, p_night::int, p_severity)
        ON CONFLICT (place, category, day) DO UPDATE
            SET reports = a.reports + 1, night = a.night + excluded.night,
                severity_sum = a.severity_sum + excluded.severity_sum
        RETURNING xmax = 0 INTO fresh;
        INSERT INTO agg_weeks AS w VALUES (pl, p_category, date_trunc('week', d)::date, 1,
            p_night::int, p_severity, fresh::int)
        ON CONFLICT (place, category, week) DO UPDATE
            SET reports = w.reports + 1, night = w.night + excluded.night,
                severity_sum = w.severity_sum + excluded.severity_sum, days = w.days + excluded.days;
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

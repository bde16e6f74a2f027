-- intake's schema: partners and their keys, categories and places (data the
-- operator maintains with `trygg-intake admin`), and the reports partners
-- send. Only intake reads or writes it (DESIGN.md section 1).

-- Organisations that send reports. allowed_categories NULL means every
-- category; rate_per_min is the token-bucket refill rate (burst = a tenth
-- of a minute's worth, at least 10).
CREATE TABLE partners (
    id                 serial PRIMARY KEY,
    name               text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    display_name       text NOT NULL DEFAULT '',
    role               text NOT NULL
                       CHECK (role IN ('police', 'housing', 'school', 'resident_app', 'staff')),
    allowed_categories text[],
    rate_per_min       integer NOT NULL DEFAULT 600 CHECK (rate_per_min > 0),
    active             boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- API keys: only the SHA-256 of the key is kept; `prefix` (the first
-- characters) lets operators tell keys apart in listings.
CREATE TABLE api_keys (
    id         serial PRIMARY KEY,
    partner_id integer NOT NULL REFERENCES partners (id),
    key_hash   bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    prefix     text NOT NULL,
    label      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_partner ON api_keys (partner_id);

-- Categories are Open311 services. response_target_min 0 means "at once".
-- attributes is the Open311 attribute list of the service definition:
-- [{"code","datatype","required","description","order","values":[{"key","name"}]}].
CREATE TABLE categories (
    service_code        text PRIMARY KEY CHECK (service_code ~ '^[a-z][a-z0-9_]{0,47}$'),
    name                text NOT NULL,
    description         text NOT NULL DEFAULT '',
    focus_area          text NOT NULL,
    default_severity    smallint NOT NULL CHECK (default_severity BETWEEN 1 AND 5),
    response_target_min integer NOT NULL CHECK (response_target_min >= 0),
    sensitive           boolean NOT NULL DEFAULT false,
    keywords            text NOT NULL DEFAULT '',
    attributes          jsonb NOT NULL DEFAULT '[]',
    active              boolean NOT NULL DEFAULT true
);

INSERT INTO categories (service_code, name, description, focus_area, default_severity,
                        response_target_min, sensitive, keywords, attributes) VALUES
 ('litter', 'Litter', 'Litter, overflowing bins, dumped rubbish.', 'physical_environment', 2, 1440, false,
  'litter,rubbish,bin,skräp', '[]'),
 ('graffiti', 'Graffiti', 'Graffiti or tags that are not offensive.', 'physical_environment', 2, 1440, false,
  'graffiti,tag,klotter',
  '[{"code":"surface","datatype":"singlevaluelist","required":false,"order":1,"description":"What is painted",
     "values":[{"key":"wall","name":"Wall"},{"key":"door","name":"Door"},{"key":"sign","name":"Sign"},{"key":"other","name":"Other"}]}]'),
 ('graffiti_offensive', 'Offensive graffiti', 'Racist, sexist, threatening or otherwise offensive graffiti: removed at once.',
  'physical_environment', 4, 0, false, 'graffiti,offensive,hate,klotter', '[]'),
 ('vandalism', 'Vandalism', 'Damaged benches, signs, windows or other property.', 'physical_environment', 3, 2880, false,
  'vandalism,damage,broken', '[]'),
 ('lighting', 'Broken lighting', 'A street lamp or other public light that is out or flickering.', 'physical_environment', 3, 4320, false,
  'lighting,lamp,dark,belysning',
  '[{"code":"pole_number","datatype":"string","required":false,"order":1,"description":"Number on the lamp post, if any"}]'),
 ('vegetation', 'Overgrown vegetation', 'Bushes or trees that block views, paths or lights.', 'physical_environment', 1, 10080, false,
  'vegetation,bushes,trees', '[]'),
 ('traffic', 'Traffic hazard', 'Dangerous crossings, broken signals, obstacles on the road or path.', 'traffic_safety', 3, 1440, false,
  'traffic,crossing,signal', '[]'),
 ('sleeping_outdoors', 'Sleeping outdoors', 'A person sleeping outdoors who may need support.', 'social_vulnerability', 3, 240, false,
  'sleeping,homeless',
  '[{"code":"persons","datatype":"number","required":false,"order":1,"description":"Number of persons"}]'),
 ('drug_dealing', 'Drug dealing', 'Suspected drug dealing.', 'crime', 4, 60, true, 'drugs', '[]'),
 ('school_incident', 'School incident', 'An incident at or near a school.', 'schools', 3, 240, true, 'school', '[]'),
 ('youth_at_risk', 'Youth at risk', 'A young person who may be at risk.', 'social_vulnerability', 4, 60, true, 'youth', '[]'),
 ('vulnerable_victim', 'Vulnerable victim', 'A person who may be a victim and vulnerable.', 'social_vulnerability', 5, 0, true, 'victim', '[]'),
 ('other', 'Other', 'Anything else about safety or the environment.', 'other', 1, 10080, false, 'other', '[]');

-- Named zones of the district. geometry is a GeoJSON Polygon or
-- MultiPolygon (WGS84, [long, lat] positions); the bounding box columns let
-- operators see a place's extent. kind 'district' is the boundary: a report
-- outside it is refused.
CREATE TABLE places (
    id         serial PRIMARY KEY,
    slug       text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name       text NOT NULL,
    kind       text NOT NULL DEFAULT 'place' CHECK (kind IN ('place', 'district')),
    geometry   jsonb NOT NULL,
    min_lat    double precision NOT NULL,
    min_long   double precision NOT NULL,
    max_lat    double precision NOT NULL,
    max_long   double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Reports. id is the UUID clients and events use; service_request_id is
-- the short public number (Open311's service_request_id), also the key of
-- list order and cursors. partner_id, category and the place ids of
-- report_places are checked in C before the insert (so one report cannot
-- fail a shared batch), against the directory intake keeps in memory;
-- partners and categories are never deleted. They deliberately have no
-- foreign keys: each check is a trigger running a query per row, about
-- 20 us of Postgres CPU per report here, on the hottest path of the
-- service (see store.c).
CREATE TABLE reports (
    id                 uuid PRIMARY KEY,
    service_request_id bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    partner_id         integer NOT NULL,
    category           text NOT NULL,
    sensitive          boolean NOT NULL,
    severity           smallint NOT NULL,
    lat                double precision,
    long               double precision,
    address_string     text,
    description        text CHECK (length(description) <= 4000),
    media_url          text,
    attributes         jsonb NOT NULL DEFAULT '{}',
    place_ids          integer[] NOT NULL DEFAULT '{}',  -- also in report_places
    status             text NOT NULL DEFAULT 'open'
                       CHECK (status IN ('open', 'acknowledged', 'in_progress', 'closed')),
    close_reason       text CHECK (close_reason IN ('fixed', 'not_ours', 'duplicate', 'no_action')),
    status_notes       text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    CHECK ((lat IS NULL) = (long IS NULL)),
    CHECK (lat IS NOT NULL OR address_string IS NOT NULL)
);
-- The list queries: newest first by service_request_id, narrowed by the
-- reader's partner, by category or by status; Open311's date windows.
CREATE INDEX reports_partner_srid ON reports (partner_id, service_request_id DESC);
CREATE INDEX reports_category_srid ON reports (category, service_request_id DESC);
CREATE INDEX reports_status_srid ON reports (status, service_request_id DESC);
CREATE INDEX reports_created ON reports (created_at);

-- Contact details, kept apart from the report so they are easy to purge
-- and never read by any query that renders output.
CREATE TABLE report_contacts (
    report_id  uuid PRIMARY KEY REFERENCES reports (id) ON DELETE CASCADE,
    first_name text,
    last_name  text,
    email      text,
    phone      text,
    device_id  text,
    account_id text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX report_contacts_created ON report_contacts (created_at);

-- Which reports lie in a place, for the place filter. reports.place_ids
-- holds the same ids so rendering a list needs no join per row.
CREATE TABLE report_places (
    report_id uuid NOT NULL,     -- reports.id (written in the same statement)
    place_id  integer NOT NULL,  -- places.id
    PRIMARY KEY (report_id, place_id)
);
CREATE INDEX report_places_place ON report_places (place_id);

-- Idempotency keys: a retried POST with the same key returns the first
-- report; the same key with another body (another request_hash) is a 409.
CREATE TABLE idempotency (
    partner_id   integer NOT NULL,
    idem_key     text NOT NULL,
    request_hash bytea NOT NULL,
    report_id    uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, idem_key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);

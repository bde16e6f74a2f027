-- walk-planner: the events it publishes (proto/trygg/walks.proto), built
-- here so they enter the outbox in the transaction of the change, and the
-- effects of the notifier's task events on findings.

-- Unscored audit parameters travel as 4 (outside the 0..3 scale).
CREATE FUNCTION walk_emit(w_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    w walks;
    stops bytea := '';
    s jsonb;
BEGIN
    SELECT * INTO w FROM walks WHERE id = w_id;
    FOR s IN SELECT * FROM jsonb_array_elements(w.stops) LOOP
        stops := stops || pb_len(9, pb_str(1, s->>'place') || pb_str(2, s->>'name') ||
            pb_double(3, (s->>'lat')::float8) || pb_double(4, (s->>'long')::float8) ||
            pb_int(5, (s->>'minutes')::int));
    END LOOP;
    PERFORM emit('trygg.walks.WalkUpdated', pb_str(1, w.id::text) || pb_int(2, w.version) ||
        pb_str(3, w.area) || pb_str(4, w.title) || pb_int(5, us(w.starts_at)) ||
        pb_int(6, us(w.ends_at)) || pb_bool(7, w.after_dark) || pb_str(8, w.status) || stops ||
        pb_double(10, w.route_m) ||
        pb_int(11, (SELECT count(*) FROM invitees WHERE walk_id = w.id AND NOT removed)) ||
        pb_int(12, (SELECT count(*) FROM invitees WHERE walk_id = w.id AND NOT removed
                     AND answer = 'accepted')) ||
        pb_int(13, us(now())) || pb_str(14, w.rewalk_of::text));
END $$;

CREATE FUNCTION finding_emit(f_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    f findings;
BEGIN
    SELECT * INTO f FROM findings WHERE id = f_id;
    PERFORM emit('trygg.walks.FindingUpdated', pb_str(1, f.id::text) || pb_int(2, f.version) ||
        pb_str(3, f.walk_id::text) || pb_str(4, f.place) || pb_str(5, f.category) ||
        pb_int(6, f.severity) ||
        pb_packed(7, (SELECT array_agg(CASE WHEN s < 0 THEN 4 ELSE s END ORDER BY i)
                        FROM unnest(f.scores) WITH ORDINALITY u(s, i))) ||
        pb_str(8, f.description) || pb_bool(9, f.lat IS NOT NULL) || pb_double(10, f.lat) ||
        pb_double(11, f.long) || pb_bool(12, f.night) || pb_str(13, f.responsible_kind) ||
        pb_str(14, f.responsible) ||
        pb_int(15, us(f.deadline::timestamp AT TIME ZONE 'Europe/Stockholm')) ||
        pb_str(16, f.status) || pb_str(17, f.declined_reason) || pb_str(18, f.declined_owner) ||
        pb_int(19, us(f.recorded_at)) || pb_int(20, us(f.status_at)) ||
        pb_str(21, coalesce(f.verified_photo_url, f.photo_url)));
END $$;

CREATE FUNCTION finding_task_emit(f_id uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    f findings;
BEGIN
    SELECT * INTO f FROM findings WHERE id = f_id;
    PERFORM emit('trygg.walks.FindingTaskRequested', pb_str(1, f.id::text) ||
        pb_str(2, f.walk_id::text) || pb_str(3, f.category) || pb_str(4, f.place) ||
        pb_bool(5, f.lat IS NOT NULL) || pb_double(6, f.lat) || pb_double(7, f.long) ||
        pb_int(8, f.severity) || pb_str(9, f.description) || pb_str(10, f.responsible) ||
        pb_int(11, us(f.deadline::timestamp AT TIME ZONE 'Europe/Stockholm')) ||
        pb_int(12, us(now())));
END $$;

-- Records a mail and publishes MailRequested for the notifier to deliver.
CREATE FUNCTION mail_emit(p_walk uuid, p_to text, p_name text, p_kind text, p_subject text,
    p_body text, p_ics text, p_method text) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    m uuid;
BEGIN
    INSERT INTO mails (walk_id, to_address, kind, subject, body_text, attachment)
    VALUES (p_walk, p_to, p_kind, p_subject, p_body, p_ics) RETURNING mail_id INTO m;
    PERFORM emit('trygg.walks.MailRequested', pb_str(1, m::text) || pb_str(2, p_to) ||
        pb_str(3, p_name) || pb_str(4, p_subject) || pb_str(5, p_body) ||
        pb_str(6, CASE WHEN p_ics IS NOT NULL THEN 'invite.ics' END) ||
        pb_str(7, CASE WHEN p_ics IS NOT NULL THEN
            'text/calendar; method=' || p_method || '; charset=UTF-8' END) ||
        pb_bytes(8, convert_to(p_ics, 'UTF8')) || pb_str(9, p_kind) ||
        pb_str(10, p_walk::text) || pb_int(11, us(now())));
    RETURN m;
END $$;

-- ---- iCalendar (RFC 5545) ----

CREATE FUNCTION ics_text(s text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(replace(replace(replace(replace(coalesce(s, ''), '\', '\\'), ';', '\;'),
        ',', '\,'), E'\r\n', '\n'), E'\n', '\n')
$$;

-- One content line, folded at 75 octets (a continuation starts with a
-- space), never inside a UTF-8 character, ended by CRLF.
CREATE FUNCTION ics_line(line text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    o text := '';
    cur int := 0;
    ch text;
    n int;
BEGIN
    FOR i IN 1..length(line) LOOP
        ch := substr(line, i, 1);
        n := octet_length(ch);
        IF cur + n > 75 THEN
            o := o || E'\r\n ';
            cur := 1;
        END IF;
        o := o || ch;
        cur := cur + n;
    END LOOP;
    RETURN o || E'\r\n';
END $$;

CREATE FUNCTION ics_time(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"')
$$;

-- The invitation of one invitee: METHOD REQUEST or CANCEL, UID stable per
-- walk, SEQUENCE the walk's.
CREATE FUNCTION ics(w walks, i invitees, method text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT string_agg(ics_line(l), '' ORDER BY n) FROM unnest(ARRAY[
        'BEGIN:VCALENDAR', 'VERSION:2.0', 'PRODID:-//Trygg//walk-planner//EN',
        'METHOD:' || method, 'BEGIN:VEVENT',
        'UID:walk-' || w.id::text || '@trygg',
        'SEQUENCE:' || w.ics_sequence,
        'DTSTAMP:' || ics_time(now()),
        'DTSTART:' || ics_time(w.starts_at),
        'DTEND:' || ics_time(w.ends_at),
        'SUMMARY:' || ics_text(w.title),
        'LOCATION:' || ics_text(coalesce((SELECT string_agg(s->>'name', ', ')
                                   FROM jsonb_array_elements(w.stops) s), w.area)),
        'DESCRIPTION:' || ics_text('Safety walk (trygghetsvandring) in ' || w.area ||
            '. Stops: ' || coalesce((SELECT string_agg((s->>'name'), ' -> ')
                                       FROM jsonb_array_elements(w.stops) s), '-') ||
            CASE WHEN w.after_dark THEN '. We walk after dark.' ELSE '.' END),
        'ORGANIZER;CN="' || replace(w.organizer, '"', '') || '":mailto:' || w.organizer_email,
        'ATTENDEE;CN="' || replace(i.name, '"', '') ||
            '";ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:' || i.email,
        'STATUS:' || CASE WHEN method = 'CANCEL' THEN 'CANCELLED' ELSE 'CONFIRMED' END,
        'END:VEVENT', 'END:VCALENDAR']) WITH ORDINALITY u(l, n)
$$;

CREATE FUNCTION rsvp_url(base text, i invitees, answer text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT base || '/v1/rsvp?i=' || i.id || '&w=' || i.walk_id || '&a=' || answer || '&sig=' ||
        sign('rsvp.' || i.id || '.' || i.walk_id || '.' || answer)
$$;

-- Mails every current invitee of w (METHOD REQUEST or CANCEL).
CREATE FUNCTION invite_all(w_id uuid, method text, base text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    w walks;
    i invitees;
    n int := 0;
BEGIN
    SELECT * INTO w FROM walks WHERE id = w_id;
    FOR i IN SELECT * FROM invitees WHERE walk_id = w_id AND NOT removed ORDER BY name LOOP
        PERFORM invite_one(w, i, method, base);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

CREATE FUNCTION invite_one(w walks, i invitees, method text, base text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM mail_emit(w.id, i.email, i.name,
        CASE WHEN method = 'CANCEL' THEN 'cancellation' ELSE 'invitation' END,
        CASE WHEN method = 'CANCEL' THEN 'Cancelled: ' ELSE
            CASE WHEN w.ics_sequence > 0 THEN 'Updated: ' ELSE 'Invitation: ' END END || w.title,
        CASE WHEN method = 'CANCEL' THEN
            'The safety walk "' || w.title || '" on ' ||
            to_char(w.starts_at AT TIME ZONE 'Europe/Stockholm', 'YYYY-MM-DD HH24:MI') ||
            ' is cancelled.'
        ELSE
            'You are invited to the safety walk "' || w.title || '" on ' ||
            to_char(w.starts_at AT TIME ZONE 'Europe/Stockholm', 'YYYY-MM-DD "at" HH24:MI') ||
            ' (Stockholm time).' || E'\n\nAccept: ' || rsvp_url(base, i, 'accept') ||
            E'\nDecline: ' || rsvp_url(base, i, 'decline') || E'\n'
        END, ics(w, i, method), method);
END $$;

-- ---- the notifier's task events ----

CREATE TABLE task_reports (
    report_id text PRIMARY KEY,
    task_id   text NOT NULL
);

CREATE FUNCTION finding_set_status(f_id uuid, p_status text, p_by text, p_note text,
    p_reason text DEFAULT NULL, p_owner text DEFAULT NULL) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE findings SET status = p_status, status_at = now(), version = version + 1,
        declined_reason = CASE WHEN p_status = 'declined' THEN p_reason ELSE declined_reason END,
        declined_owner = CASE WHEN p_status = 'declined' THEN p_owner ELSE declined_owner END
     WHERE id = f_id;
    INSERT INTO finding_steps (finding_id, status, by_name, note)
    VALUES (f_id, p_status, p_by, coalesce(p_note, ''));
    PERFORM finding_emit(f_id);
END $$;

CREATE FUNCTION task_opened(p_task text, p_reports text[], p_category text, p_place text,
    p_at_us bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := to_timestamp(p_at_us / 1e6);
    reopen boolean;
BEGIN
    SELECT EXISTS (SELECT 1 FROM tasks WHERE place = coalesce(p_place, '')
        AND category = coalesce(p_category, '') AND completed_at IS NOT NULL
        AND completed_at > at - interval '90 days') INTO reopen;
    INSERT INTO tasks (task_id, report_id, place, category, opened_at)
    VALUES (p_task, p_reports[1], coalesce(p_place, ''), coalesce(p_category, ''), at)
    ON CONFLICT (task_id) DO NOTHING;
    INSERT INTO task_reports SELECT r, p_task FROM unnest(p_reports) r
    ON CONFLICT (report_id) DO UPDATE SET task_id = excluded.task_id;
    INSERT INTO agg_tasks AS a VALUES (coalesce(p_place, ''), coalesce(p_category, ''),
        local_day(at), 1, CASE WHEN reopen THEN 1 ELSE 0 END)
    ON CONFLICT (place, category, day) DO UPDATE
        SET opened = a.opened + 1, reopened = a.reopened + excluded.reopened;
END $$;

CREATE FUNCTION task_joined(p_task text, p_report text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO task_reports VALUES (p_report, p_task)
    ON CONFLICT (report_id) DO UPDATE SET task_id = excluded.task_id
$$;

-- kind: ack, done, declined. The findings of the task (by the report ids
-- the task names: a finding's id is its report id at the notifier).
CREATE FUNCTION task_changed(p_task text, p_reports text[], p_kind text, p_note text,
    p_reason text, p_owner text, p_at_us bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    f findings;
BEGIN
    IF p_kind = 'done' THEN
        UPDATE tasks SET status = 'done', completed_at = to_timestamp(p_at_us / 1e6)
         WHERE task_id = p_task;
    ELSIF p_kind = 'declined' THEN
        UPDATE tasks SET status = 'declined' WHERE task_id = p_task;
    ELSE
        UPDATE tasks SET status = 'acknowledged' WHERE task_id = p_task AND status = 'open';
    END IF;
    FOR f IN SELECT * FROM findings WHERE id::text IN
            (SELECT report_id FROM task_reports WHERE task_id = p_task
             UNION SELECT unnest(p_reports)) LOOP
        IF p_kind = 'ack' AND f.status = 'proposed' THEN
            PERFORM finding_set_status(f.id, 'accepted', 'notifier', p_note);
        ELSIF p_kind = 'done' AND f.status IN ('proposed', 'accepted', 'in_progress') THEN
            PERFORM finding_set_status(f.id, 'done', 'notifier', p_note);
        ELSIF p_kind = 'declined' AND f.status IN ('proposed', 'accepted', 'in_progress') THEN
            PERFORM finding_set_status(f.id, 'declined', 'notifier', p_note,
                coalesce(nullif(p_note, ''), p_reason),
                coalesce(nullif(p_owner, ''), '(not named by the unit)'));
        END IF;
    END LOOP;
END $$;

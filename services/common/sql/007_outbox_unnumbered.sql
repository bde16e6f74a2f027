-- The relay's questions about rows left unnumbered (services/common/outbox.c:
-- the idle check and the numbering round), answered from the
-- outbox_unsequenced partial index whatever the outbox looked like when the
-- relay's connection planned them. As plain statements they were prepared
-- once per connection, while the outbox was small, and kept that plan: a
-- sequential scan, which on a grown outbox read every row in each idle
-- check, five a second (41,000 rows each in the intake bench; every row of
-- a month's retention in a deployment). Rows numbered at insert
-- (006_outbox_reserve.sql) never enter the partial index, so it stays as
-- small as the work left to the relay; with sequential scans off, its
-- index is the cheapest way to the answer at any size.
CREATE FUNCTION outbox_unnumbered(n bigint) RETURNS SETOF bigint
LANGUAGE plpgsql STABLE SET enable_seqscan = off AS $$
BEGIN
    RETURN QUERY SELECT id FROM outbox WHERE pub_seq IS NULL ORDER BY id LIMIT n;
END
$$;

CREATE FUNCTION outbox_unnumbered_exists() RETURNS boolean
LANGUAGE plpgsql STABLE SET enable_seqscan = off AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM outbox WHERE pub_seq IS NULL);
END
$$;

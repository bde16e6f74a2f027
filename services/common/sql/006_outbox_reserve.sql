-- Numbering at insert (outbox.h, "Two ways to number"). A producer that
-- writes many events may give its outbox rows their pub_seq itself, in the
-- transaction that inserts them, instead of leaving each row to the relay's
-- UPDATE (a second version of every row, its index entries and a commit
-- per round: a third of intake's database CPU per report, BENCHMARKS.md).
--
-- outbox_reserve(n) takes the next n numbers and returns the first; the
-- caller inserts its rows with pub_seq first .. first + n - 1. The row lock
-- it takes on outbox_state is held to commit, so reserved numbers commit in
-- order, and a rollback hands them back: the committed numbers are always
-- 1..last_seq without a hole. The relay takes the same lock to number the
-- rows left to it. Call it as the transaction's last step: every numbering
-- transaction of the publisher waits for it from there to its commit.
-- n <= 0 or NULL reserves nothing, takes no lock and returns NULL.
CREATE FUNCTION outbox_reserve(n bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    first bigint;
BEGIN
    IF n IS NULL OR n <= 0 THEN
        RETURN NULL;
    END IF;
    UPDATE outbox_state SET last_seq = last_seq + n RETURNING last_seq - n + 1 INTO first;
    RETURN first;
END
$$;

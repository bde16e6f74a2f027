-- Issue 11: history imported from a district's old systems
-- (`trygg-intake admin import FILE.csv`, services/intake/import.c).
-- An imported report keeps its original time in created_at, is marked
-- imported, and carries the old system's id (per partner: importing the
-- same file twice creates nothing twice) and the time it was closed.
ALTER TABLE reports ADD COLUMN imported boolean NOT NULL DEFAULT false;
ALTER TABLE reports ADD COLUMN external_id text CHECK (length(external_id) <= 200);
ALTER TABLE reports ADD COLUMN closed_at timestamptz;
CREATE UNIQUE INDEX reports_external ON reports (partner_id, external_id)
    WHERE external_id IS NOT NULL;

-- Issue 9: Open311 lists are newest first by created_at within their date
-- window (services/intake/query.h). Filtered on service_code, they are
-- found through this index, one range per code starting at the window's
-- end, so a page of 1,000 reads about 1,000 entries whatever the window
-- or the code's share of the reports.
CREATE INDEX reports_category_created ON reports (category, created_at DESC);

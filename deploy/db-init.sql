-- db-init.sql: one login role and one schema per service, the role owning
-- its schema and having it as its search_path (DESIGN.md section 1: no
-- service reads another's schema). Idempotent: rerunning it only resets
-- the passwords, so it is also how passwords are rotated.
--
-- Run as a superuser (or a role with CREATEROLE that can create schemas)
-- in the service database, with psql 15 or later:
--
--   psql -v ON_ERROR_STOP=1 -d trygg -f deploy/db-init.sql
--
-- Passwords come from psql variables (-v intake_password=...) or, when a
-- variable is not given, from the environment: INTAKE_DB_PASSWORD,
-- NOTIFIER_DB_PASSWORD, WALKS_DB_PASSWORD, REPORTING_DB_PASSWORD, and for
-- the backbone test tools TESTPUB_DB_PASSWORD and TESTSUB_DB_PASSWORD. A
-- missing one stops the script with an error naming it. Passwords end up
-- inside DATABASE_URLs, so use URL-safe characters (or percent-encode).
--
-- (deploy/pg-cluster.sh bootstrap does the same for the passwordless local
-- clusters of `make run` and `make test`.)

\set ON_ERROR_STOP on
-- Keep the ALTER ROLE ... PASSWORD statements out of the server log.
SET log_statement = 'none';
SET log_min_duration_statement = -1;
SET client_min_messages = warning;

\if :{?intake_password}
\else
  \getenv intake_password INTAKE_DB_PASSWORD
\endif
\if :{?notifier_password}
\else
  \getenv notifier_password NOTIFIER_DB_PASSWORD
\endif
\if :{?walks_password}
\else
  \getenv walks_password WALKS_DB_PASSWORD
\endif
\if :{?reporting_password}
\else
  \getenv reporting_password REPORTING_DB_PASSWORD
\endif
\if :{?testpub_password}
\else
  \getenv testpub_password TESTPUB_DB_PASSWORD
\endif
\if :{?testsub_password}
\else
  \getenv testsub_password TESTSUB_DB_PASSWORD
\endif

\if :{?intake_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'set INTAKE_DB_PASSWORD (or -v intake_password=...)'; END $$;
\endif
\if :{?notifier_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'set NOTIFIER_DB_PASSWORD (or -v notifier_password=...)'; END $$;
\endif
\if :{?walks_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'set WALKS_DB_PASSWORD (or -v walks_password=...)'; END $$;
\endif
\if :{?reporting_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'set REPORTING_DB_PASSWORD (or -v reporting_password=...)'; END $$;
\endif
\if :{?testpub_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'set TESTPUB_DB_PASSWORD (or -v testpub_password=...)'; END $$;
\endif
\if :{?testsub_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'set TESTSUB_DB_PASSWORD (or -v testsub_password=...)'; END $$;
\endif

BEGIN;

-- Nobody but the owners may create objects in the shared public schema
-- (already the default from Postgres 15 on; explicit for older clusters).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- The roles: created when missing, password (re)set every run.
SELECT format('CREATE ROLE %I LOGIN', r)
  FROM unnest(ARRAY['intake', 'notifier', 'walks', 'reporting', 'testpub', 'testsub']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\gexec

ALTER ROLE intake    WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'intake_password';
ALTER ROLE notifier  WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'notifier_password';
ALTER ROLE walks     WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'walks_password';
ALTER ROLE reporting WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'reporting_password';
ALTER ROLE testpub   WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'testpub_password';
ALTER ROLE testsub   WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'testsub_password';

-- One schema per role, owned by it, private, and first on its search_path.
SELECT format('CREATE SCHEMA IF NOT EXISTS %1$I AUTHORIZATION %1$I', r),
       format('ALTER SCHEMA %1$I OWNER TO %1$I', r),
       format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', r),
       format('ALTER ROLE %1$I IN DATABASE %2$I SET search_path = %1$I', r, current_database()),
       format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), r)
  FROM unnest(ARRAY['intake', 'notifier', 'walks', 'reporting', 'testpub', 'testsub']) AS r
\gexec

COMMIT;

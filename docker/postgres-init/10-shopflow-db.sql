-- Creates the shopflow metadata-store database next to Airflow's own database.
--
-- The official postgres image runs this file once, when the data volume is empty, with
--   psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f <this file>
-- so it is connected to Airflow's database as the superuser. The role name and password come from the
-- container environment (SHOPFLOW_DB_USER, SHOPFLOW_DB_PASSWORD, set by docker-compose.yaml from .env):
-- no credential is written in this file. \getenv needs psql 15 or newer (postgres:16 ships psql 16).
--
-- Changing SHOPFLOW_DB_PASSWORD later does not re-run this script: change the role's password with
--   docker compose exec postgres psql -U "$POSTGRES_USER" -c "ALTER ROLE shopflow PASSWORD '...'"
-- or start from an empty volume (docker compose down -v deletes all data).

\set ON_ERROR_STOP on

\getenv shopflow_db_user SHOPFLOW_DB_USER
\getenv shopflow_db_password SHOPFLOW_DB_PASSWORD

\if :{?shopflow_db_user}
\else
  \set shopflow_db_user shopflow
\endif

\if :{?shopflow_db_password}
\else
  \warn 'SHOPFLOW_DB_PASSWORD is not set in the postgres container'
  DO $$ BEGIN RAISE EXCEPTION 'SHOPFLOW_DB_PASSWORD is not set'; END $$;
\endif

SELECT current_database() AS airflow_db \gset

-- A login role that owns only the shopflow database (no superuser, no CREATEDB, no CREATEROLE).
CREATE ROLE :"shopflow_db_user" LOGIN PASSWORD :'shopflow_db_password';
CREATE DATABASE shopflow OWNER :"shopflow_db_user" ENCODING 'UTF8';

-- Neither role can connect to the other's database (the superuser still can).
REVOKE ALL ON DATABASE shopflow FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE shopflow TO :"shopflow_db_user";
REVOKE ALL ON DATABASE :"airflow_db" FROM PUBLIC;

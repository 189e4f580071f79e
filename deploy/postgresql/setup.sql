-- dm-bootstrap's database and role. Run as a superuser:
--   psql -v role=dmboot -v database=dmboot -v password="$(cat /root/dmboot-db-password)" -f setup.sql
-- then `dmboot db upgrade` (or the first `dmboot init`/`serve`) creates the schema.
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"database" OWNER :"role" ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;

-- An sqlite3 workload with deterministic output: 100,000 rows inserted,
-- indexed, queried, updated, deleted, vacuumed. Run it with and without
-- LD_PRELOAD and compare stdout; preload/tests/programs.rs does.
--
--   sqlite3 DB_FILE < tests/preload/sqlite_workload.sql
PRAGMA cache_size = -20000;
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, value REAL, grp INTEGER, blob BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
INSERT INTO t SELECT x, printf('name-%08d', x * 7919 % 100003), x * 0.5, x % 97,
                     zeroblob(x % 300) FROM c;
CREATE INDEX t_name ON t(name);
CREATE INDEX t_grp ON t(grp, value);
SELECT count(*), sum(value), min(name), max(name), sum(length(blob)) FROM t;
SELECT grp, count(*), sum(id), avg(value) FROM t GROUP BY grp ORDER BY grp LIMIT 5;
SELECT name FROM t ORDER BY name DESC LIMIT 3;
BEGIN;
UPDATE t SET name = name || '-' || grp WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
INSERT INTO t(name, value, grp) SELECT name || '-copy', value * 2, grp FROM t WHERE id % 7 = 0;
COMMIT;
SELECT count(*), count(DISTINCT grp), sum(length(name)), total(value) FROM t;
SELECT group_concat(name, ',') FROM (SELECT name FROM t WHERE grp = 1 ORDER BY name LIMIT 20);
SELECT a.grp, count(*) FROM t a JOIN t b ON a.id = b.id + 1 WHERE a.grp < 3 GROUP BY a.grp;
VACUUM;
PRAGMA integrity_check;

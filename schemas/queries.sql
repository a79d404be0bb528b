-- Questions people ask of the access_keys dataset, in DuckDB's dialect, over the view that
-- `iam-key-export ddl --dialect duckdb --location <out>` creates. Each of the first four reads
-- the latest snapshot: snapshot ids are start times (YYYYMMDDTHHMMSSZ) and sort in time order,
-- so max(snapshot_id) is the latest; put an id there instead to ask about another snapshot.
-- Ages count back from the snapshot's own snapshot_time, not from now: an answer does not
-- change with the day it is asked. Run by test/ddl.test.ts over a fixture snapshot.

-- Active keys older than 90 days (90 whole days or more at the snapshot), oldest first.
SELECT account_id, user_name, access_key_id, create_date, key_age_days
FROM access_keys
WHERE snapshot_id = (SELECT max(snapshot_id) FROM access_keys)
  AND status = 'Active'
  AND key_age_days >= 90
ORDER BY key_age_days DESC, account_id, user_name, access_key_id;

-- Keys unused for 90 days or never used (any status; a never-used key counts however new it is).
SELECT account_id, user_name, access_key_id, status, last_used_date
FROM access_keys
WHERE snapshot_id = (SELECT max(snapshot_id) FROM access_keys)
  AND (last_used_date IS NULL OR last_used_date <= snapshot_time - INTERVAL 90 DAY)
ORDER BY last_used_date NULLS FIRST, account_id, user_name, access_key_id;

-- Users with two active keys (IAM allows two per user: a rotation left unfinished, or a key to remove).
SELECT account_id, user_id, user_name, count(*) AS active_keys, min(create_date) AS oldest_key_created
FROM access_keys
WHERE snapshot_id = (SELECT max(snapshot_id) FROM access_keys)
  AND status = 'Active'
GROUP BY account_id, user_id, user_name
HAVING count(*) >= 2
ORDER BY account_id, user_name;

-- Keys created in the last 7 days before the snapshot started (or while it ran), newest first.
SELECT account_id, user_name, access_key_id, status, create_date
FROM access_keys
WHERE snapshot_id = (SELECT max(snapshot_id) FROM access_keys)
  AND create_date >= snapshot_time - INTERVAL 7 DAY
ORDER BY create_date DESC, account_id, user_name, access_key_id;

-- Per-snapshot counts, every snapshot: keys, active keys, users with keys, accounts.
SELECT
  snapshot_id,
  min(snapshot_time) AS snapshot_time,
  count(*) AS keys,
  count(*) FILTER (WHERE status = 'Active') AS active_keys,
  count(DISTINCT user_id) AS users_with_keys,
  count(DISTINCT account_id) AS accounts
FROM access_keys
GROUP BY snapshot_id
ORDER BY snapshot_id;

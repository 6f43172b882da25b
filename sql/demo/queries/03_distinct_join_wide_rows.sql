-- title: Users who ever viewed or clicked anything
-- anti-pattern: needless wide projection: SELECT DISTINCT u.* over a one-to-many join sorts every joined wide row to remove duplicates that an EXISTS never creates
SELECT DISTINCT u.*
FROM users AS u
JOIN events AS e ON e.user_id = u.id
WHERE e.event_type IN ('view', 'click');

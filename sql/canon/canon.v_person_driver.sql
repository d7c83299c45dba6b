-- canon.v_person_driver: THE driver of each canonical person, used by every view and by
-- claim generation so that they never disagree (SPEC 8, predecessor defect 10): the
-- driver linked to the person; if several, the most recently linked
-- (identity_links.linked_at DESC, then driver_id ASC). Written as an anti-join, not
-- DISTINCT ON, so the planner can look up one person by index or hash-join all of them.
CREATE OR REPLACE VIEW canon.v_person_driver AS
SELECT dl.person_key,
       dl.source_pk AS driver_id
FROM canon.identity_links dl
WHERE dl.source_table = 'drivers'
  AND NOT EXISTS (
    SELECT 1
    FROM canon.identity_links newer
    WHERE newer.source_table = 'drivers'
      AND newer.person_key = dl.person_key
      AND (newer.linked_at > dl.linked_at
           OR (newer.linked_at = dl.linked_at AND newer.source_pk < dl.source_pk))
  );
COMMENT ON VIEW canon.v_person_driver IS
  'One driver per person: the most recently linked (linked_at DESC, then driver_id). Every limbo and claim view takes the driver from here.';

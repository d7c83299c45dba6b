-- The versions of the probabilistic tier's parameters (docs/matching.md, "The probabilistic
-- tier"): one row per version, exactly one active. The prior, the bands and the guards of a
-- version; its m and u per comparison level are rows of canon.match_fs_levels. Every link
-- and review row of the tier records the version that made it. A change of the active
-- version, or of which version is active, marks every OPEN unmatched lead due for a retry
-- (triggers match_fs_versions_*); an inactive version marks nothing.
CREATE TABLE canon.match_fs_versions (
  version                  integer PRIMARY KEY CHECK (version > 0),
  active                   boolean NOT NULL DEFAULT false,
  prior_match_share        numeric(6,5) NOT NULL CHECK ((prior_match_share > 0) AND (prior_match_share <= 1)),
  link_probability_min     numeric(7,6) NOT NULL CHECK ((link_probability_min > 0) AND (link_probability_min < 1)),
  review_probability_min   numeric(7,6) NOT NULL CHECK ((review_probability_min > 0) AND (review_probability_min < 1)),
  margin_bits_min          numeric(5,2) NOT NULL CHECK (margin_bits_min >= 0),
  rare_token_max_share     numeric(8,7) NOT NULL CHECK ((rare_token_max_share > 0) AND (rare_token_max_share < 1)),
  name_block_max_drivers   integer NOT NULL CHECK (name_block_max_drivers > 0),
  token_share_min          numeric(10,9) NOT NULL CHECK ((token_share_min > 0) AND (token_share_min < 1)),
  created_at               timestamptz NOT NULL DEFAULT now(),
  notes                    text NOT NULL,
  CHECK (review_probability_min <= link_probability_min)
);

CREATE UNIQUE INDEX match_fs_versions_one_active_idx ON canon.match_fs_versions (active) WHERE active;

-- Only a change that touches the active version (activating one included) marks leads due:
-- an inactive version waiting for a person changes no outcome.
CREATE TRIGGER match_fs_versions_inserted
  AFTER INSERT ON canon.match_fs_versions
  FOR EACH ROW WHEN (NEW.active)
  EXECUTE FUNCTION canon.mark_open_leads_due();

CREATE TRIGGER match_fs_versions_updated
  AFTER UPDATE ON canon.match_fs_versions
  FOR EACH ROW WHEN (OLD.active OR NEW.active)
  EXECUTE FUNCTION canon.mark_open_leads_due();

CREATE TRIGGER match_fs_versions_deleted
  AFTER DELETE ON canon.match_fs_versions
  FOR EACH ROW WHEN (OLD.active)
  EXECUTE FUNCTION canon.mark_open_leads_due();

CREATE TRIGGER match_fs_versions_truncated
  AFTER TRUNCATE ON canon.match_fs_versions
  FOR EACH STATEMENT
  EXECUTE FUNCTION canon.mark_open_leads_due();

COMMENT ON TABLE canon.match_fs_versions IS
  'Versions of the probabilistic tier (one active): prior share of leads with a driver, link and review bands (probability), margin in bits between the best two candidates, rare-token guard and name block size, the floor of a token''s share. m/u per level: canon.match_fs_levels. A change of the active version (or of which is active) marks every OPEN unmatched lead due for a retry.';
COMMENT ON COLUMN canon.match_fs_versions.prior_match_share IS
  'Share of the tier''s leads that have a driver at all; the prior of a pair is this share / number of indexed drivers.';
COMMENT ON COLUMN canon.match_fs_versions.margin_bits_min IS
  'A link needs the best candidate''s weight to beat the second''s by at least this many bits (a factor of 2^bits); else the lead goes to review.';
COMMENT ON COLUMN canon.match_fs_versions.rare_token_max_share IS
  'A name token typed by at most this share of the drivers is rare: it is a blocking key, and a link without plate evidence needs one rare token to agree (never on a common name alone). Below 1 / this share drivers (2,000 at 0.0005) no token can be told rare: the name block is off.';

INSERT INTO canon.match_fs_versions (version, active, prior_match_share, link_probability_min, review_probability_min,
                                     margin_bits_min, rare_token_max_share, name_block_max_drivers, token_share_min, notes) VALUES
  (1, true, 0.50000, 0.999000, 0.500000, 6.00, 0.0005000, 200, 0.000001000,
   'm by hand (docs/matching.md, "Where the m and u come from"); u of plates and hire dates estimated on the demo base (canon.estimate_fs_u); bands chosen on npm run bench:quality (residual and hard-negative categories).');

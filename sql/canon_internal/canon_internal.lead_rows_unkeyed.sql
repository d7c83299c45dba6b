-- Internal bookkeeping: lead rows without a row in canon_internal.lead_keys and why (a key over 200
-- characters). Written by canon.refresh_lead_keys; counted by doctor.
CREATE TABLE canon_internal.lead_rows_unkeyed (
  lead_id integer PRIMARY KEY,
  reason  text NOT NULL CHECK (reason = 'OVERSIZED_KEY'),
  seen_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE canon_internal.lead_rows_unkeyed IS
  'Bookkeeping (internal): lead rows without a row in canon_internal.lead_keys and why (OVERSIZED_KEY: a lead key over 200 characters). Maintained by canon.refresh_lead_keys.';

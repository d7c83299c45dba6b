#!/usr/bin/env bash
# Regenerates migration 0006 (matching) from its sql/ files while it is not on main yet.
cd "$(dirname "$0")/.." && npx tsx scripts/new-migration.ts --number 6 matching \
  migrations/parts/0006_matching_tables.sql \
  sql/canon/canon.refresh_driver_index.sql sql/canon/canon.refresh_lead_keys.sql \
  sql/canon/canon.lead_candidates.sql sql/canon/canon.lead_decisions.sql sql/canon/canon.match_cabinet_leads.sql \
  sql/ops/ops.explain_lead.sql sql/ops/ops.v_shared_keys.sql

// What `cabinet-leads export` writes: one definition per export, the view it reads (SQL
// decides every value; this file only picks columns, order and filters) and the kind of
// each column, which decides how a CSV writes it and what cell an xlsx gets.
import { UsageError } from '../errors.js';
import { parseTimestamp } from '../import/leads-csv.js';

/**
 * text: written as is (guarded against formulas in CSV); integer; money: an amount in the
 * claim rules' currency (PEN, S/); date; datetime: a timestamptz shown in the business time
 * zone; boolean.
 */
export type ColumnKind = 'text' | 'integer' | 'money' | 'date' | 'datetime' | 'boolean';

export interface ExportColumn {
  name: string;
  kind: ColumnKind;
  /** xlsx column width, in characters */
  width: number;
}

export interface ValueFilter {
  /** the flag (--status, --stage) */
  flag: string;
  column: string;
  values: readonly string[];
  /** how values are written in the view */
  case: 'lower' | 'upper';
}

export interface ExportDefinition {
  name: string;
  /** what one row is, for messages: "claims", "leads" */
  rows: string;
  summary: string;
  view: string;
  columns: readonly ExportColumn[];
  orderBy: readonly string[];
  filter: ValueFilter;
}

const text = (name: string, width = 14): ExportColumn => ({ name, kind: 'text', width });
const col = (name: string, kind: ColumnKind, width = 12): ExportColumn => ({ name, kind, width });

export const CLAIMS: ExportDefinition = {
  name: 'claims',
  rows: 'claims',
  summary: 'claims (lead x milestone) with amount, status, driver and lead, from ops.v_cabinet_claims',
  view: 'ops.v_cabinet_claims',
  columns: [
    text('lead_source_pk', 24),
    col('lead_date', 'date'),
    col('week_start', 'date'),
    col('milestone', 'integer', 10),
    col('amount_expected', 'money', 16),
    text('currency', 9),
    text('status', 11),
    text('lead_name', 30),
    text('park_phone', 14),
    text('asset_plate_number', 12),
    text('driver_id', 34),
    text('person_key', 38),
    col('generated_at', 'datetime', 20),
    col('paid_at', 'datetime', 20),
    col('run_id', 'integer', 8),
  ],
  orderBy: ['lead_date', 'lead_source_pk', 'milestone'],
  filter: { flag: 'status', column: 'status', values: ['expected', 'generated', 'paid', 'rejected', 'expired'], case: 'lower' },
};

export const LIMBO: ExportDefinition = {
  name: 'limbo',
  rows: 'leads',
  summary: 'every lead with its limbo stage, trips, milestones and claims, from ops.v_cabinet_leads_limbo',
  view: 'ops.v_cabinet_leads_limbo',
  columns: [
    col('lead_id', 'integer', 9),
    text('lead_source_pk', 24),
    col('lead_date', 'date'),
    col('week_start', 'date'),
    text('lead_name', 30),
    text('park_phone', 14),
    text('asset_plate_number', 12),
    text('limbo_stage', 16),
    text('reason_code', 16),
    text('person_key', 38),
    text('driver_id', 34),
    col('trips_14d', 'integer', 9),
    col('window_end_14d', 'date'),
    text('window_status', 9),
    col('reached_m1_14d', 'boolean', 9),
    col('reached_m5_14d', 'boolean', 9),
    col('reached_m25_14d', 'boolean', 9),
    col('expected_amount_14d', 'money', 16),
    col('has_claim_m1', 'boolean', 9),
    col('has_claim_m5', 'boolean', 9),
    col('has_claim_m25', 'boolean', 9),
    text('limbo_reason_detail', 80),
    col('evaluated_at', 'datetime', 20),
  ],
  orderBy: ['lead_date', 'lead_source_pk', 'lead_id'],
  filter: { flag: 'stage', column: 'limbo_stage', values: ['NO_IDENTITY', 'NO_DRIVER', 'NO_TRIPS_14D', 'TRIPS_NO_CLAIM', 'OK'], case: 'upper' },
};

export const EXPORTS: readonly ExportDefinition[] = [CLAIMS, LIMBO];

export interface ExportFilters {
  /** lead_date >= from (YYYY-MM-DD) */
  from: string | null;
  /** lead_date <= to (YYYY-MM-DD) */
  to: string | null;
  /** values of the definition's filter column, or null for all */
  values: string[] | null;
}

/** A --from/--to value: YYYY-MM-DD or day-first DD/MM/YYYY, as the import reads dates. */
export function dateFlag(command: string, flag: string, raw: string | undefined): string | null {
  if (raw === undefined) return null;
  const r = parseTimestamp(raw.trim(), true);
  if ('error' in r) throw new UsageError(`${command}: invalid --${flag} ${JSON.stringify(raw)}: ${r.error.replace(/^is not a date \((.*)\)$/, '$1')}`);
  return r.ok;
}

/** --status paid,generated (or --stage ...): the values, checked against the view's. */
export function valuesFlag(command: string, f: ValueFilter, raw: string | undefined): string[] | null {
  if (raw === undefined) return null;
  const values = raw.split(',').map((v) => v.trim()).filter(Boolean).map((v) => (f.case === 'lower' ? v.toLowerCase() : v.toUpperCase()));
  const bad = values.filter((v) => !f.values.includes(v));
  if (values.length === 0 || bad.length > 0) {
    throw new UsageError(`${command}: invalid --${f.flag} ${JSON.stringify(raw)}: expected one or more of ${f.values.join(', ')} (comma-separated)`);
  }
  return [...new Set(values)];
}

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;
const literal = (v: string) => `'${v.replace(/'/g, "''")}'`;

/** How a column is selected: text the writers convert (dates ISO, datetimes in the session's zone). */
function selected(c: ExportColumn): string {
  const x = ident(c.name);
  switch (c.kind) {
    case 'date':
      return `to_char(${x}, 'YYYY-MM-DD')`;
    case 'datetime':
      return `to_char(${x}, 'YYYY-MM-DD HH24:MI:SS')`;
    case 'boolean':
      return `CASE WHEN ${x} THEN 'true' WHEN NOT ${x} THEN 'false' END`;
    default:
      return `${x}::text`;
  }
}

/**
 * The query of an export. Filter values are checked (dates parsed, values from a fixed
 * list) before they are written as literals: DECLARE CURSOR takes no parameters.
 */
export function exportQuery(def: ExportDefinition, f: ExportFilters): string {
  const where: string[] = [];
  if (f.from !== null) where.push(`lead_date >= DATE ${literal(f.from)}`);
  if (f.to !== null) where.push(`lead_date <= DATE ${literal(f.to)}`);
  if (f.values !== null) where.push(`${ident(def.filter.column)} IN (${f.values.map(literal).join(', ')})`);
  return `SELECT ${def.columns.map((c) => `${selected(c)} AS ${ident(c.name)}`).join(', ')}
          FROM ${def.view}${where.length > 0 ? `\n          WHERE ${where.join(' AND ')}` : ''}
          ORDER BY ${def.orderBy.map(ident).join(', ')}`;
}

// cabinet-leads resolve-lead / ignore-lead / unlink-lead: the manual identity tools of
// psql (ops.resolve_lead, ops.ignore_lead, ops.unlink_lead) for people who do not use
// psql. The SQL functions decide and audit everything; this file passes the arguments,
// names the person at the keyboard and prints the result. The OS user goes into the
// session's application_name ("cabinet-leads resolve-lead (ana@ops-pc)"), which
// canon.identity_audit records in its client column next to the database user.
import { hostname, userInfo } from 'node:os';
import type pg from 'pg';
import { UsageError } from '../errors.js';
import { parse } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';

/** SQLSTATEs by which the ops.* tools refuse an operation (nothing was changed). */
const REFUSALS = new Set(['22023', 'P0002', 'CL021', 'CL022', 'CL023', 'CL024', 'CL025', '55P03']);

/** A refused operation: exit code 1, the database's one-line reason. */
export class RefusedError extends Error {
  readonly exitCode = 1;
  override name = 'RefusedError';
}

function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? process.env.USERNAME ?? 'unknown';
  }
}

/** application_name of the session: the command and who runs it (at most 63 bytes). */
export function applicationName(command: string): string {
  const name = `cabinet-leads ${command} (${osUser()}@${hostname()})`;
  return Buffer.byteLength(name) <= 63 ? name : Buffer.from(name).subarray(0, 63).toString('utf8').replace(/\uFFFD$/, '');
}

async function callTool(command: string, sql: string, params: unknown[]): Promise<Record<string, unknown>> {
  return withDatabase(async ({ db, log }) => {
    const client: pg.PoolClient = await db.pool.connect();
    try {
      await client.query(`SELECT set_config('application_name', $1, false)`, [applicationName(command)]);
      const res = await client.query<{ result: Record<string, unknown> }>(sql, params);
      const result = res.rows[0]!.result;
      log.info({ command, lead_source_pk: result['lead_source_pk'], action: result['action'] }, 'identity change done');
      return result;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== undefined && REFUSALS.has(code)) throw new RefusedError(`${command} refused: ${(err as Error).message}`);
      throw err;
    } finally {
      await client.query(`RESET application_name`).catch(() => {});
      client.release();
    }
  });
}

function requireNote(command: string, note: string | undefined): string {
  if (note === undefined || note.trim() === '') {
    throw new UsageError(`${command}: --note "..." is required: say why (it is kept in canon.identity_audit)`);
  }
  return note;
}

export function positionalsOf(command: string, positionals: string[], names: string[]): string[] {
  if (positionals.length !== names.length) {
    throw new UsageError(
      `${command}: expected ${names.join(' ')}, got ${positionals.length === 0 ? 'nothing' : positionals.map((p) => JSON.stringify(p)).join(' ')} (see cabinet-leads ${command} --help)`,
    );
  }
  return positionals;
}

/** '; N unsettled claim(s) removed' when the tool deleted claims, else ''. */
function claimsRemoved(r: Record<string, unknown>): string {
  const n = Array.isArray(r['claims_removed']) ? r['claims_removed'].length : 0;
  return n ? `; ${n} unsettled claim(s) removed` : '';
}

const EXIT_CODES = `Exit codes: 0 done, 1 refused by the database (unknown lead or driver, wrong state;
the message says why; nothing was changed), 2 usage error (missing argument or --note,
bad flag, database unreachable).`;

const WHO = `The change is one transaction, recorded in canon.identity_audit with the database
user, the note and this command's application_name, which names your OS user and host.`;

export const resolveLeadCommand: Command = {
  name: 'resolve-lead',
  summary: 'link a lead to a driver by hand (ops.resolve_lead)',
  help: `Usage: cabinet-leads resolve-lead LEAD_KEY DRIVER_ID --note "why" [--force] [--json]

Links the lead LEAD_KEY (its lead_source_pk: the external_id, or the id when it has
none) to the driver DRIVER_ID: to the driver's person, or a new person with the
driver's link when the driver has none; rule MANUAL_RESOLUTION, score 100, HIGH. Writes
the identity origin (decided_by manual) and marks the lead's unmatched row RESOLVED.
Later pipeline runs keep this link. Same as: SELECT ops.resolve_lead(key, driver, note);

Claims the lead still carries for another person (its link was deleted by hand) are
deleted when not paid or rejected.

Refused: an unknown lead, an unknown or deleted driver, a lead already linked (unlink
it first), a driver whose person already carries another lead (unless --force), a lead
with paid or rejected claims of another person (finance first).

Options:
  --note TEXT  why this is the right driver (required)
  --force      the driver's person already has another lead: add this lead to that same
               person anyway (both leads then claim the driver's trips; check that it
               is not the same sign-up twice)
  --json       print the result as JSON
  -h, --help   show this help

${WHO}
${EXIT_CODES}`,
  async run(argv) {
    const { values, positionals } = parse('resolve-lead', argv, { note: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' } }, true);
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const [key, driver] = positionalsOf('resolve-lead', positionals, ['LEAD_KEY', 'DRIVER_ID']) as [string, string];
    const note = requireNote('resolve-lead', values.note);
    const r = await callTool('resolve-lead', `SELECT ops.resolve_lead($1, $2, $3, $4) AS result`, [key, driver, note, values.force ?? false]);
    if (values.json) console.log(JSON.stringify(r));
    else {
      const before = r['unmatched_before'] as { status: string; reason_code: string } | null;
      console.log(
        `lead ${key} linked to driver ${driver}: person ${String(r['person_key'])}${r['person_created'] ? ' (new)' : ''}, MANUAL_RESOLUTION` +
          `${r['forced'] ? ', forced' : ''}${before ? `; unmatched ${before.reason_code} ${before.status} -> RESOLVED` : ''}` +
          `${claimsRemoved(r)}`,
      );
    }
    return 0;
  },
};

export const ignoreLeadCommand: Command = {
  name: 'ignore-lead',
  summary: 'stop the job retrying a lead (ops.ignore_lead)',
  help: `Usage: cabinet-leads ignore-lead LEAD_KEY --note "why" [--json]

Marks the lead LEAD_KEY IGNORED in canon.identity_unmatched (created with reason
MANUAL_IGNORE when the job never evaluated it): the job never selects it again. To have
it retried: UPDATE canon.identity_unmatched SET status = 'OPEN' WHERE source_pk = '...';
Same as: SELECT ops.ignore_lead(key, note);

Claims the lead still carries (its link was deleted by hand) are deleted when not paid
or rejected.

Refused: an unknown lead, a linked lead (unlink it first), a lead with paid or rejected
claims (money went out for it: finance first).

Options:
  --note TEXT  why the lead will never match (required)
  --json       print the result as JSON
  -h, --help   show this help

${WHO}
${EXIT_CODES}`,
  async run(argv) {
    const { values, positionals } = parse('ignore-lead', argv, { note: { type: 'string' }, json: { type: 'boolean' } }, true);
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const [key] = positionalsOf('ignore-lead', positionals, ['LEAD_KEY']) as [string];
    const note = requireNote('ignore-lead', values.note);
    const r = await callTool('ignore-lead', `SELECT ops.ignore_lead($1, $2) AS result`, [key, note]);
    if (values.json) console.log(JSON.stringify(r));
    else {
      const before = r['status_before'] ? `was ${String(r['status_before'])} ${String(r['reason_code'])}` : 'never evaluated';
      console.log(`lead ${key} IGNORED (${before})${claimsRemoved(r)}: the job will not retry it`);
    }
    return 0;
  },
};

export const notThisDriverCommand: Command = {
  name: 'not-this-driver',
  summary: 'say a lead is not a driver, never to be linked (ops.not_this_driver)',
  help: `Usage: cabinet-leads not-this-driver LEAD_KEY DRIVER_ID --note "why" [--json]

Records that the lead LEAD_KEY is not the driver DRIVER_ID (a relative, a namesake, the
car's previous owner): no later run links the two, by the rules or by the probabilistic
tier, and the lead is retried at the next run without that driver. Answering again
replaces the note. Same as: SELECT ops.not_this_driver(key, driver, note);

Refused: an unknown lead or driver, a lead linked to that driver (unlink it first).

Options:
  --note TEXT  why it is not this driver (required)
  --json       print the result as JSON
  -h, --help   show this help

${EXIT_CODES}`,
  async run(argv) {
    const { values, positionals } = parse('not-this-driver', argv, { note: { type: 'string' }, json: { type: 'boolean' } }, true);
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const [key, driver] = positionalsOf('not-this-driver', positionals, ['LEAD_KEY', 'DRIVER_ID']) as [string, string];
    const note = requireNote('not-this-driver', values.note);
    const r = await callTool('not-this-driver', `SELECT ops.not_this_driver($1, $2, $3) AS result`, [key, driver, note]);
    if (values.json) console.log(JSON.stringify(r));
    else console.log(`lead ${key} is not driver ${driver}: never linked to it${r['marked_due'] ? '; retried at the next run' : ''}`);
    return 0;
  },
};

export const unlinkLeadCommand: Command = {
  name: 'unlink-lead',
  summary: 'remove a wrong lead link (ops.unlink_lead)',
  help: `Usage: cabinet-leads unlink-lead LEAD_KEY --note "why" [--json]

Removes the link of the lead LEAD_KEY. When no other lead uses its person, the person
goes too, with its driver link(s) and origin; otherwise the person stays. The lead's
claims that are not paid or rejected are deleted (they came from the wrong driver's
trips) and so is its unmatched row: the next run evaluates the lead as new (and may
match the same driver again if the data has not changed: then resolve-lead it to the
right driver, or ignore-lead it). Same as: SELECT ops.unlink_lead(key, note);

Refused: an unknown lead, a lead that is not linked, a lead with paid or rejected claims
(also one finance settles while the command waits for it).

Options:
  --note TEXT  why the link is wrong (required)
  --json       print the result as JSON
  -h, --help   show this help

${WHO}
${EXIT_CODES}`,
  async run(argv) {
    const { values, positionals } = parse('unlink-lead', argv, { note: { type: 'string' }, json: { type: 'boolean' } }, true);
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const [key] = positionalsOf('unlink-lead', positionals, ['LEAD_KEY']) as [string];
    const note = requireNote('unlink-lead', values.note);
    const r = await callTool('unlink-lead', `SELECT ops.unlink_lead($1, $2) AS result`, [key, note]);
    if (values.json) console.log(JSON.stringify(r));
    else {
      console.log(
        `lead ${key} unlinked from person ${String(r['person_key'])} (driver ${String(r['driver_id'] ?? 'none')})` +
          `${r['person_removed'] ? '; person removed with its driver link' : '; person kept (other leads use it)'}` +
          `${claimsRemoved(r)}; the next run re-evaluates it`,
      );
    }
    return 0;
  },
};

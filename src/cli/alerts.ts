// cabinet-leads alerts: runs the alert check (ops.check_limbo_alerts, which records the
// alerts in ops.alerts) and prints the firing alerts in plain words.
// Exit codes: 0 none fire, 1 some fire, 2 error (bad flag, database, check failed).
import { type Alert, checkAlerts, describeAlert } from '../alerts.js';
import { exitCodeOf, oneLine } from '../errors.js';
import { parse } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';

/** Any failure of the check itself is exit code 2, never 1 (1 means "alerts fire"). */
class AlertCheckError extends Error {
  readonly exitCode = 2;
  override name = 'AlertCheckError';
}

export const alertsCommand: Command = {
  name: 'alerts',
  summary: 'check the limbo alert rules; exit 0 none, 1 some fire, 2 error',
  help: `Usage: cabinet-leads alerts [--json]

Evaluates the alert rules of ops.alert_rules (SELECT * FROM ops.check_limbo_alerts()),
records the firing alerts in ops.alerts (a persisting alert keeps its first_seen_at)
and prints them in plain words, one per line.

Options:
  --json      print {"checked_at", "firing", "new", "alerts": [...]} on stdout
  -h, --help  show this help

Exit codes: 0 no alert fires, 1 at least one alert fires, 2 error (bad flag, database
unreachable, schema not current, the check failed). Rules, thresholds and the week
definition: docs/alerts-and-report.md.`,
  async run(argv) {
    const { values } = parse('alerts', argv, { json: { type: 'boolean' } });
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    let alerts: Alert[];
    try {
      alerts = await withDatabase(({ db }) => checkAlerts(db.pool, { record: true }));
    } catch (err) {
      if (exitCodeOf(err) === 2) throw err;
      throw new AlertCheckError(`alert check failed: ${oneLine(err)}`);
    }
    if (values.json) {
      console.log(
        JSON.stringify({
          checked_at: new Date().toISOString(),
          firing: alerts.length,
          new: alerts.filter((a) => a.is_new).length,
          alerts,
        }),
      );
    } else if (alerts.length === 0) {
      console.log('No alert fires.');
    } else {
      console.log(`${alerts.length} alert${alerts.length === 1 ? '' : 's'} firing:`);
      for (const a of alerts) console.log(`  ${describeAlert(a)}`);
    }
    return alerts.length === 0 ? 0 : 1;
  },
};

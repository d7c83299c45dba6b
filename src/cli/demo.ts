// cabinet-leads demo: fills the source tables with a realistic synthetic data set,
// deterministic from a seed (see src/demo.ts for what it contains).
import { generateDemoData, DEMO_DEFAULTS } from '../demo.js';
import { PIPELINE_DEFAULTS } from '../pipeline.js';
import { intFlag, parse } from './args.js';
import type { Command } from './command.js';
import { withDatabase } from './context.js';

export const demoCommand: Command = {
  name: 'demo',
  summary: 'generate a realistic synthetic data set into the source tables',
  help: `Usage: cabinet-leads demo [--seed N] [--leads N] [--drivers N] [--trip-days N] [--reset] [--json]

Generates drivers of several parks, cabinet leads with the variations real exports
have (phone formats, plates, accents, typos, shared phones and plates, missing keys,
leads a person must decide: AMBIGUOUS, CONFLICT, WEAK_MATCH_ONLY, SHARED_KEY) and daily
trips in both date formats, deterministic from --seed. The true driver of
each lead is recorded in demo.lead_truth (used by the matching-quality benchmark).

Options:
  --seed N       random seed (default ${DEMO_DEFAULTS.seed})
  --leads N      number of leads (default ${DEMO_DEFAULTS.leads})
  --drivers N    number of drivers (default ${DEMO_DEFAULTS.drivers})
  --trip-days N  days of trip history before today, over which the leads are dated too
                 (default ${DEMO_DEFAULTS.tripDays}: reconcile's default --days-back evaluates them all)
  --reset        empty the source tables, the demo schema and the product's canon data first
  --json         print the summary as JSON
  -h, --help     show this help`,
  async run(argv) {
    const { values } = parse('demo', argv, {
      seed: { type: 'string' },
      leads: { type: 'string' },
      drivers: { type: 'string' },
      'trip-days': { type: 'string' },
      reset: { type: 'boolean' },
      json: { type: 'boolean' },
    });
    if (values.help) {
      console.log(this.help);
      return 0;
    }
    const opts = {
      seed: intFlag('demo', 'seed', values.seed, DEMO_DEFAULTS.seed, 0, 2147483647),
      leads: intFlag('demo', 'leads', values.leads, DEMO_DEFAULTS.leads, 0, 10_000_000),
      drivers: intFlag('demo', 'drivers', values.drivers, DEMO_DEFAULTS.drivers, 1, 10_000_000),
      tripDays: intFlag('demo', 'trip-days', values['trip-days'], DEMO_DEFAULTS.tripDays, 1, 3650),
      reset: values.reset ?? false,
    };
    return withDatabase(async ({ db, log }) => {
      const client = await db.pool.connect();
      try {
        const summary = await generateDemoData(client, opts, log);
        if (values.json) console.log(JSON.stringify(summary));
        else {
          console.log(Object.entries(summary).map(([k, v]) => `${k}: ${v}`).join('\n'));
          // Leads are dated over --trip-days: a run with a shorter days_back leaves the older ones out.
          const daysBack = opts.tripDays > PIPELINE_DEFAULTS.daysBack ? ` --days-back ${opts.tripDays}` : '';
          console.log(`\nnext: cabinet-leads reconcile${daysBack}   (then: cabinet-leads status, cabinet-leads review, cabinet-leads report)`);
        }
        return 0;
      } finally {
        client.release();
      }
    });
  },
};

// Flag parsing shared by the subcommands (node:util parseArgs, strict): an unknown flag
// or a bad value is a UsageError (exit code 2) that names the flag and the value.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

/** `--limit -1` would read as two flags: glue a negative number to its flag so it is validated. */
function glueNegativeValues(argv: string[], options: Options): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    const name = a.startsWith('--') ? a.slice(2) : undefined;
    if (name && options[name]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

const HELP = { help: { type: 'boolean', short: 'h' } } as const;

export function parse<O extends Options>(command: string, argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({
      args: glueNegativeValues(argv, options),
      options: { ...options, ...HELP } as O & typeof HELP,
      strict: true,
      allowPositionals,
    });
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message.split('\n')[0]} (see cabinet-leads ${command} --help)`);
  }
}

/** The largest integer PostgreSQL's integer (and statement_timeout in ms) holds: no flag goes above it. */
export const INT4_MAX = 2147483647;

export function intFlag(command: string, name: string, raw: string | undefined, fallback: number, min: number, max: number = INT4_MAX): number {
  if (raw === undefined) return fallback;
  if (!/^-?\d+$/.test(raw.trim())) {
    throw new UsageError(`${command}: invalid --${name} ${JSON.stringify(raw)}: expected an integer from ${min} to ${max}`);
  }
  const n = Number(raw);
  if (n < min || n > max) {
    throw new UsageError(`${command}: invalid --${name} ${raw}: expected an integer from ${min} to ${max}`);
  }
  return n;
}

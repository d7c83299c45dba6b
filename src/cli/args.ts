// Flag parsing shared by the subcommands (node:util parseArgs, strict): an unknown flag
// or a bad value is a UsageError (exit code 2) that names the flag and the value.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse(command: string, argv: string[], options: Options, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals });
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message.split('\n')[0]} (see cabinet-leads ${command} --help)`);
  }
}

export function intFlag(command: string, name: string, raw: string | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
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

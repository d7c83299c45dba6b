// Errors that carry their exit code, so every entry point maps failures the same way:
// 2 = usage or configuration (bad flag, bad env value, database unreachable, contract
// violated), 1 = a run that failed. Messages are one line and name the wrong value.

export class UsageError extends Error {
  readonly exitCode = 2;
  override name = 'UsageError';
}

export class ConfigError extends Error {
  readonly exitCode = 2;
  override name = 'ConfigError';
}

export class RunFailedError extends Error {
  readonly exitCode = 1;
  override name = 'RunFailedError';
  constructor(
    message: string,
    readonly runId: number | null,
  ) {
    super(message);
  }
}

/** SQLSTATE raised by canon.check_source_contract(). */
export const CONTRACT_VIOLATION_SQLSTATE = 'CL002';

export function exitCodeOf(err: unknown): number {
  if (err && typeof err === 'object' && 'exitCode' in err && typeof err.exitCode === 'number') {
    return err.exitCode;
  }
  return 1;
}

/** One line, no stack: what a person reads on stderr. */
export function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s*\n\s*/g, ' ').trim();
}

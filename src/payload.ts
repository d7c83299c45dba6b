// Validation of the reconcile job's payload (from the crontab line or an ad-hoc job).
// Defaults equal the CLI's; a wrong field is named with its value.
import { PIPELINE_DEFAULTS, PIPELINE_LIMITS, type PipelineOptions } from './pipeline.js';

type Payload = Omit<PipelineOptions, 'trigger' | 'workerJobId'>;

function int(obj: Record<string, unknown>, key: string, fallback: number, range: { min: number; max: number }): number {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < range.min || v > range.max) {
    throw new Error(`invalid job payload field ${key}=${JSON.stringify(v)}: expected an integer from ${range.min} to ${range.max}`);
  }
  return v;
}

function bool(obj: Record<string, unknown>, key: string): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new Error(`invalid job payload field ${key}=${JSON.stringify(v)}: expected true or false`);
  return v;
}

export function parsePipelinePayload(payload: unknown): Payload {
  const obj = payload && typeof payload === 'object' && !Array.isArray(payload) ? (payload as Record<string, unknown>) : {};
  return {
    daysBack: int(obj, 'days_back', PIPELINE_DEFAULTS.daysBack, PIPELINE_LIMITS.daysBack),
    limit: int(obj, 'limit', PIPELINE_DEFAULTS.limit, PIPELINE_LIMITS.limit),
    dryRun: bool(obj, 'dry_run'),
    onlyLimbo: bool(obj, 'only_limbo'),
    timeoutSeconds: int(obj, 'timeout_seconds', PIPELINE_DEFAULTS.timeoutSeconds, PIPELINE_LIMITS.timeoutSeconds),
  };
}

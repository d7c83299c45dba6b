// Placeholder replaced by the demo generator.
import type pg from 'pg';
import type { Logger } from './logger.js';
export const DEMO_DEFAULTS = { seed: 42, leads: 2000, drivers: 5000, tripDays: 60 } as const;
export interface DemoOptions { seed: number; leads: number; drivers: number; tripDays: number; reset: boolean }
export async function generateDemoData(_c: pg.ClientBase, _o: DemoOptions, _l: Logger): Promise<Record<string, number>> {
  throw new Error('not implemented');
}

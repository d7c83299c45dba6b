// Benchmark of `cabinet-leads import-leads` (issue 6: a 1M-row export imports in under
// 60 s). Generates a realistic cabinet export (every column of the table, accents,
// quoted commas, 0.5 % external_ids repeated in the file, 0.1 % broken rows), then times
// the real CLI as a process into a fresh migrated database, twice: the first import
// inserts, the second finds every row already there.
//   npx tsx bench/import.ts [--rows 1000000] [--keep-file]
//   DATABASE_URL=postgres://... npx tsx bench/import.ts      (else the embedded server)
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { PROJECT_ROOT } from '../src/config.js';
import { benchArgs, benchDatabase, machine } from './lib.js';

const BUDGET_SECONDS = 60;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`invalid --${name} ${JSON.stringify(process.argv[i + 1])}: expected a positive integer`);
  return n;
}

/** Deterministic pseudo-random numbers (mulberry32). */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIRST = ['Juan', 'María', 'José', 'Ana', 'Luis', 'Rosa', 'Carlos', 'Lucía', 'Pedro', 'Ñuño', 'Jesús', 'Milagros'];
const LAST = ['Pérez', 'Quispe', 'Mamani', 'García', 'Rodríguez', 'Flores', 'Huamán', 'Chávez', 'Rojas', 'Díaz'];
const MODELS = ['Toyota Yaris', 'Kia Rio', 'Hyundai Accent', 'Chevrolet Sail', 'Nissan Versa'];
const COLORS = ['blanco', 'negro', 'gris', 'rojo', 'azul'];
const CITIES = ['Lima', 'Arequipa', 'Trujillo', 'Cusco'];

async function generate(file: string, rows: number): Promise<{ bytes: number; duplicates: number; broken: number }> {
  const rand = rng(42);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const out = createWriteStream(file);
  const header = 'external_id,lead_created_at,first_name,middle_name,last_name,park_phone,asset_plate_number,asset_model,asset_color,park_name,status,activation_city,target_city,tariff,last_active_date,active_1,active_5,active_10,active_15,active_25,active_50,active_100,created_at\r\n';
  out.write('\uFEFF' + header);
  let duplicates = 0;
  let broken = 0;
  let chunk = '';
  const day0 = Date.UTC(2025, 0, 1);
  for (let i = 0; i < rows; i++) {
    const dup = i > 1000 && rand() < 0.005;
    const id = dup ? Math.floor(rand() * (i - 1)) : i;
    if (dup) duplicates++;
    const created = new Date(day0 + Math.floor(rand() * 500 * 86400) * 1000);
    const ts = created.toISOString().replace('T', ' ').slice(0, 19);
    const bad = rand() < 0.001;
    if (bad) broken++;
    const last = `${pick(LAST)}${rand() < 0.05 ? `, ${pick(LAST)}` : ''}`;
    chunk +=
      `${id.toString(16).padStart(32, '0')},${bad ? '31-02-2026' : ts},${pick(FIRST)},${rand() < 0.3 ? pick(FIRST) : ''},"${last}",` +
      `${rand() < 0.8 ? `9${String(Math.floor(rand() * 1e8)).padStart(8, '0')}` : ''},${rand() < 0.7 ? `ABC-${Math.floor(rand() * 1000)}` : ''},` +
      `${pick(MODELS)},${pick(COLORS)},Yego,active,${pick(CITIES)},${pick(CITIES)},econom,${ts.slice(0, 10)},` +
      `${rand() < 0.5},${rand() < 0.3 ? 'yes' : 'no'},1,0,t,f,,${ts}\r\n`;
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end(chunk);
  await once(out, 'finish');
  return { bytes: (await stat(file)).size, duplicates, broken };
}

function runImport(file: string, url: string): Promise<{ code: number | null; ms: number; stdout: string; stderr: string }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'cabinet-leads.js'), 'import-leads', file, '--json'], {
      env: { ...process.env, DATABASE_URL: url, LOG_LEVEL: 'warn', LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, ms: performance.now() - t0, stdout, stderr }));
  });
}

async function main(): Promise<number> {
  benchArgs(import.meta.url, { values: ['rows'], switches: ['keep-file'] });
  const rows = arg('rows', 1_000_000);
  const file = path.join(os.tmpdir(), `cabinet-leads-bench-${rows}.csv`);
  let t = performance.now();
  const gen = await generate(file, rows);
  console.log(`generated ${file}: ${rows} rows, ${(gen.bytes / 2 ** 20).toFixed(1)} MB, ${gen.duplicates} repeated ids, ${gen.broken} broken rows, in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  const db = await benchDatabase('import');
  let code = 0;
  try {
    console.log(`machine: ${machine(db.serverVersion)}`);
    for (const label of ['first import (inserts)', 'second import (all duplicates)']) {
      const r = await runImport(file, db.url);
      if (r.code === 2 || !r.stdout) throw new Error(`import-leads exited ${r.code}: ${r.stderr}`);
      const s = JSON.parse(r.stdout) as {
        read: number; inserted: number; duplicates: number; rejected: number; duration_ms: number; durations_ms: Record<string, number>;
      };
      const seconds = r.ms / 1000;
      console.log(
        `${label}: ${seconds.toFixed(1)} s wall (${(s.duration_ms / 1000).toFixed(1)} s in the import: ` +
          `${Object.entries(s.durations_ms).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`).join(', ')}), ${Math.round(s.read / seconds).toLocaleString('en-US')} rows/s; ` +
          `read ${s.read}, inserted ${s.inserted}, duplicates ${s.duplicates}, rejected ${s.rejected}` +
          `${seconds > BUDGET_SECONDS ? `  OVER BUDGET (${BUDGET_SECONDS} s)` : ''}`,
      );
      if (seconds > BUDGET_SECONDS) code = 1;
    }
    t = performance.now();
    const n = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM public.module_ct_cabinet_leads`);
    console.log(`rows in public.module_ct_cabinet_leads: ${n.rows[0]!.n} (count in ${Math.round(performance.now() - t)} ms)`);
  } finally {
    await db.close();
    if (!process.argv.includes('--keep-file')) await rm(file, { force: true });
  }
  return code;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench/import: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);

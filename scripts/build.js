#!/usr/bin/env node
// Compiles the CLI to JavaScript in dist/ so that each process starts without compiling
// TypeScript (a cron call of `reconcile` paid ~0.2-1 s for it). `npm ci` runs it by itself
// (the "prepare" script): there is no build step for a user to run. esbuild (already
// installed with tsx) bundles src/cli/main.ts with code splitting, so each command's code
// loads only when it runs; node_modules stay external. dist/build.json lists every source
// file with its mtime and size: bin/cabinet-leads.js runs dist/ only while they all match,
// and the TypeScript sources through tsx otherwise. This script never fails an install:
// without esbuild, or on a build error, it says so and the CLI runs from the sources.
//   node scripts/build.js        (or npm run build: after editing src/ for fast starts again)
import { mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist');
const tmp = path.join(root, `dist.tmp-${process.pid}`);

try {
  const { build } = await import('esbuild');
  const started = Date.now();
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints: ['src/cli/main.ts'],
    outdir: tmp,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    metafile: true,
    logLevel: 'error',
  });
  const inputs = {};
  for (const file of Object.keys(result.metafile.inputs).sort()) {
    const s = statSync(path.join(root, file));
    inputs[file] = { mtimeMs: s.mtimeMs, size: s.size };
  }
  // Written last: a dist/ without it is never run.
  writeFileSync(path.join(tmp, 'build.json'), JSON.stringify({ built_at: new Date().toISOString(), inputs }, null, 1) + '\n');
  // Swapped in whole: a CLI starting meanwhile finds the old build, the new one or none (then tsx).
  rmSync(out, { recursive: true, force: true });
  renameSync(tmp, out);
  console.log(`cabinet-leads: compiled ${Object.keys(inputs).length} source files to dist/ in ${Date.now() - started} ms`);
} catch (err) {
  rmSync(tmp, { recursive: true, force: true });
  console.warn(`cabinet-leads: not compiled (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); the CLI runs from the TypeScript sources (slower start)`);
}

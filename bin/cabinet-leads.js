#!/usr/bin/env node
// Entry point of `npx cabinet-leads`. `npm ci` compiles the CLI to dist/ by itself
// (scripts/build.js, the prepare script); this runs that JavaScript when it was built from
// the sources as they are now (one stat per source file, listed in dist/build.json), and
// the TypeScript sources through tsx otherwise: an install with --ignore-scripts, sources
// edited since (`npm run build` makes starts fast again), or CABINET_LEADS_FROM_SOURCE=1.
import { readFileSync, statSync } from 'node:fs';

const root = new URL('..', import.meta.url);

function compiledIsCurrent() {
  if (process.env.CABINET_LEADS_FROM_SOURCE === '1') return false;
  try {
    const { inputs } = JSON.parse(readFileSync(new URL('dist/build.json', root), 'utf8'));
    for (const [file, built] of Object.entries(inputs)) {
      const s = statSync(new URL(file, root));
      if (s.mtimeMs !== built.mtimeMs || s.size !== built.size) return false;
    }
    return Object.keys(inputs).length > 0;
  } catch {
    return false;
  }
}

if (compiledIsCurrent()) {
  await import('../dist/main.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}

// bin/cabinet-leads.js runs the JavaScript that `npm ci` compiled (scripts/build.js, the
// prepare script) while it matches the sources, and the TypeScript sources through tsx
// otherwise (no build, a source edited since, a failed build): never a stale build. In a
// copy of the project (node_modules linked) so that the real dist/ is left alone.
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { PROJECT_ROOT } from '../../src/config.js';

function copyProject(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cabinet-leads-entry-'));
  for (const f of ['bin', 'src', 'tasks', 'scripts', 'migrations', 'crontab', 'package.json']) cpSync(path.join(PROJECT_ROOT, f), path.join(dir, f), { recursive: true });
  symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  return dir;
}

const version = (dir: string) =>
  spawnSync(process.execPath, [path.join(dir, 'bin', 'cabinet-leads.js'), '--version'], { cwd: dir, encoding: 'utf8', env: { ...process.env, CABINET_LEADS_FROM_SOURCE: '' } });

test('the compiled CLI runs while it matches the sources; an edited source, or no build, runs the sources', (t) => {
  const dir = copyProject();
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const expected = (JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  // no build: the sources, through tsx
  let r = version(dir);
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, `${expected}\n`);
  // what npm ci runs
  const built = execFileSync(process.execPath, ['scripts/build.js'], { cwd: dir, encoding: 'utf8' });
  t.regex(built, /^cabinet-leads: compiled \d+ source files to dist\/ in \d+ ms\n$/);
  const manifest = JSON.parse(readFileSync(path.join(dir, 'dist', 'build.json'), 'utf8')) as { inputs: Record<string, unknown> };
  t.true('src/cli/main.ts' in manifest.inputs && 'src/cli/reconcile.ts' in manifest.inputs && 'tasks/reconcile_cabinet_leads_pipeline.ts' in manifest.inputs);
  // mark the compiled entry, to see which one runs (dist files are not in the manifest)
  appendFileSync(path.join(dir, 'dist', 'main.js'), `\nprocess.stderr.write('ENTRY=dist\\n');\n`);
  r = version(dir);
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, `${expected}\n`);
  t.is(r.stderr, 'ENTRY=dist\n');
  // a source edited after the build: the sources run, never the stale build
  const later = new Date(Date.now() + 5000);
  utimesSync(path.join(dir, 'src', 'cli', 'status.ts'), later, later);
  r = version(dir);
  t.is(r.status, 0, r.stderr);
  t.is(r.stderr, '', 'the stale build did not run');
  t.is(r.stdout, `${expected}\n`);
  // forced from the sources
  execFileSync(process.execPath, ['scripts/build.js'], { cwd: dir });
  appendFileSync(path.join(dir, 'dist', 'main.js'), `\nprocess.stderr.write('ENTRY=dist\\n');\n`);
  t.is(version(dir).stderr, 'ENTRY=dist\n');
  const forced = spawnSync(process.execPath, [path.join(dir, 'bin', 'cabinet-leads.js'), '--version'], { cwd: dir, encoding: 'utf8', env: { ...process.env, CABINET_LEADS_FROM_SOURCE: '1' } });
  t.is(forced.stderr, '');
});

test('the build never fails an install: without esbuild it says so and exits 0', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cabinet-leads-nobuild-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(path.join(PROJECT_ROOT, 'scripts', 'build.js'), path.join(dir, 'scripts', 'build.js'), { recursive: true });
  const r = spawnSync(process.execPath, ['scripts/build.js'], { cwd: dir, encoding: 'utf8' });
  t.is(r.status, 0);
  t.regex(r.stderr, /^cabinet-leads: not compiled \(.*\); the CLI runs from the TypeScript sources \(slower start\)\n$/);
});

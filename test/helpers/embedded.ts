// Embedded servers of a test's own, the way a user without DATABASE_URL gets them: data
// folders in the temp dir named after the test process. Their servers run in their own
// session (src/embedded.ts), so nothing stops them with the test: when the test process
// ends its folders' servers are killed and the folders removed, and a folder left by a
// test process that was killed is cleaned up by the next test process that makes one.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { endOnSignals } from '../../src/embedded.js';

const PREFIX = 'cabinet-embedded-test-';
const made = new Set<string>();
let prepared = false;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Pids of the postgres servers and initdb runs of a data folder (CABINET_DATA_DIR), from their command lines. */
export function serverProcessesOf(dataDir: string): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  const pids: number[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s*(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const args = m[2]!;
    if ((args.includes(`-D ${path.join(dataDir, 'pg')} `) && /\bpostgres\b/.test(args)) || args.includes(`--pgdata=${path.join(dataDir, 'pg.init-')}`)) {
      pids.push(Number(m[1]));
    }
  }
  return pids;
}

/** Immediate shutdown of whatever runs on the folder (SIGQUIT: no checkpoint, the folder is thrown away). */
function killServersOf(dataDir: string): void {
  for (const pid of serverProcessesOf(dataDir)) {
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      // gone meanwhile
    }
  }
}

function removeFolder(dir: string): void {
  killServersOf(dir);
  rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}

function prepareOnce(): void {
  if (prepared) return;
  prepared = true;
  for (const name of readdirSync(tmpdir())) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
    if (m && !alive(Number(m[1]))) removeFolder(path.join(tmpdir(), name));
  }
  process.on('exit', () => {
    for (const dir of made) removeFolder(dir);
  });
  // A test process ended by a signal runs no exit handler: stop what it started first.
  endOnSignals(() => {
    for (const dir of made) killServersOf(dir);
  });
}

/** A new, empty data folder for CABINET_DATA_DIR (the first command that uses it runs initdb). */
export function embeddedDataDir(label: string): string {
  prepareOnce();
  const dir = mkdtempSync(path.join(tmpdir(), `${PREFIX}${process.pid}-${label}-`));
  chmodSync(dir, 0o755); // as root the server runs as the postgres user
  made.add(dir);
  return dir;
}

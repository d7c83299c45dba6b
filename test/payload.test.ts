// The reconcile job's payload (src/payload.ts) takes the values the CLI flags take: an
// integer out of range is refused naming the field and the value, never passed on to
// become a database error after the job was picked up.
import test from 'ava';
import { parsePipelinePayload } from '../src/payload.js';

test('defaults equal the CLI\'s', (t) => {
  t.deepEqual(parsePipelinePayload({}), { daysBack: 30, limit: 2000, dryRun: false, onlyLimbo: false, timeoutSeconds: 900 });
  t.like(parsePipelinePayload({ limit: 2147483647, timeout_seconds: 2147483, days_back: 36500 }), { limit: 2147483647, timeoutSeconds: 2147483, daysBack: 36500 });
});

test('an integer field out of range or not an integer is refused naming it and its range', (t) => {
  t.throws(() => parsePipelinePayload({ limit: 99999999999 }), { message: 'invalid job payload field limit=99999999999: expected an integer from 0 to 2147483647' });
  t.throws(() => parsePipelinePayload({ timeout_seconds: 99999999999 }), { message: /^invalid job payload field timeout_seconds=99999999999: expected an integer from 0 to 2147483$/ });
  t.throws(() => parsePipelinePayload({ days_back: 36501 }), { message: /days_back=36501/ });
  t.throws(() => parsePipelinePayload({ limit: -1 }), { message: /limit=-1/ });
  t.throws(() => parsePipelinePayload({ limit: 1.5 }), { message: /limit=1\.5/ });
  t.throws(() => parsePipelinePayload({ limit: '10' }), { message: /limit="10"/ });
});

#!/usr/bin/env node
// Entry point of `npx cabinet-leads`: runs the TypeScript sources through tsx, so that
// `npm ci` alone (no build step) gives a working command.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');

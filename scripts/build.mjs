// Bundles the CLI into one file, dist/bootkey.js (the initrd executable is built from it later).
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

await build({
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/bootkey.js',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  banner: { js: '#!/usr/bin/env node\nimport { createRequire as __bootkeyCreateRequire } from "node:module"; const require = __bootkeyCreateRequire(import.meta.url);' },
  // better-sqlite3 is a native addon that finds its .node file relative to itself: load it
  // from node_modules at run time (server commands only; never on the initrd path).
  external: ['better-sqlite3', 'pg', 'pg-native'],
  legalComments: 'none',
  logLevel: 'warning',
});
chmodSync('dist/bootkey.js', 0o755);

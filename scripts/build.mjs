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
  legalComments: 'none',
  logLevel: 'warning',
});
chmodSync('dist/bootkey.js', 0o755);

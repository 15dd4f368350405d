// Builds dist/bootkey-linux-x64: a Node single executable application (SEA) for the initrd.
//   1. esbuild bundles src/initrd/boot-main.ts as ONE CommonJS file (SEA main scripts are CJS
//      and their require() only loads built-in modules). cbor-extract (optional native speed-up,
//      cbor-x falls back to JS) is a stub. better-sqlite3's JS is bundled, and its native addon
//      is loaded at run time from beside the executable (better_sqlite3.node, copied to
//      dist/better_sqlite3.node; else /usr/libexec/bootkey; BOOTKEY_SQLITE_ADDON overrides) through
//      module.createRequire, which a SEA may use for files on disk: the packages ship both in
//      /usr/libexec/bootkey/ (docs/PACKAGING.md). The server commands are imported lazily
//      (src/cli/server.ts), so nothing on the enroll / unlock / initrd-agent / tpm / eventlog
//      path loads the addon (the initrd has only the executable).
//   2. node --experimental-sea-config → the preparation blob.
//   3. postject injects it into a stripped copy of this node binary, flipping the SEA fuse.
// Checks: the bundle's metafile shows no module importing better-sqlite3 outside src/server/,
// and `bootkey-linux-x64 --version` runs. Prints size and start-up time.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const OUT = 'dist/bootkey-linux-x64';
const WORK = 'dist/sea';
const SENTINEL = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.log(`build-sea: skipped (${process.platform}-${process.arch}: the SEA is built on linux-x64 only)`);
  process.exit(0);
}

rmSync(WORK, { recursive: true, force: true });
mkdirSync(WORK, { recursive: true });

// cbor-x tries require('cbor-extract') in a try/catch; in a SEA that require() prints a warning
// on every start. Resolve it to a module that throws, so cbor-x takes its JS path silently.
const noCborExtract = {
  name: 'no-cbor-extract',
  setup(b) {
    b.onResolve({ filter: /^cbor-extract$/ }, () => ({ path: 'cbor-extract', namespace: 'stub' }));
    b.onLoad({ filter: /.*/, namespace: 'stub' }, () => ({ contents: 'throw new Error("cbor-extract is not in the single executable");', loader: 'js' }));
  },
};

// better-sqlite3 finds its addon with the `bindings` package (a search of node_modules): in
// the SEA, the addon sits beside the executable instead.
const sqliteAddon = {
  name: 'sqlite-addon-beside-executable',
  setup(b) {
    b.onResolve({ filter: /^bindings$/ }, () => ({ path: 'bindings', namespace: 'addon' }));
    b.onLoad({ filter: /.*/, namespace: 'addon' }, () => ({
      contents: `const { createRequire } = require('node:module');
const { existsSync } = require('node:fs');
const { dirname, isAbsolute, join } = require('node:path');
// process.execPath comes from /proc/self/exe; without /proc (a chroot) it is argv[0]: then the
// packages' directory.
module.exports = (name) => {
  const dirs = [isAbsolute(process.execPath) ? dirname(process.execPath) : undefined, '/usr/libexec/bootkey'].filter(Boolean);
  const file = process.env.BOOTKEY_SQLITE_ADDON || dirs.map((d) => join(d, name)).find((f) => existsSync(f)) || join(dirs[0], name);
  try {
    return createRequire(file)(file);
  } catch (e) {
    throw new Error('cannot load the SQLite addon ' + file + ' (' + (e.code || e.message) + '): it ships beside the executable; set BOOTKEY_SQLITE_ADDON to its path');
  }
};`,
      loader: 'js',
    }));
  },
};

const result = await build({
  entryPoints: ['src/initrd/boot-main.ts'],
  outfile: `${WORK}/bootkey.cjs`,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
  plugins: [noCborExtract, sqliteAddon],
});

// Nothing outside src/server/ (and better-sqlite3 itself) may import better-sqlite3.
for (const [file, meta] of Object.entries(result.metafile.inputs)) {
  if (meta.imports.some((i) => /(^|\/)better-sqlite3(\/lib\/index\.js)?$/.test(i.path)) && !file.startsWith('src/server/') && !file.includes('node_modules/better-sqlite3/')) {
    throw new Error(`build-sea: ${file} imports better-sqlite3: the initrd executable must not need it`);
  }
}

writeFileSync(`${WORK}/sea-config.json`, JSON.stringify({
  main: `${WORK}/bootkey.cjs`,
  output: `${WORK}/sea-prep.blob`,
  disableExperimentalSEAWarning: true,
  // no useCodeCache: the V8 code cache made the executable segfault in a TCG guest (other CPU)
}));
execFileSync(process.execPath, ['--experimental-sea-config', `${WORK}/sea-config.json`], { stdio: ['ignore', 'ignore', 'inherit'] });

rmSync(OUT, { force: true });
copyFileSync(process.execPath, OUT);
chmodSync(OUT, 0o755);
// Strip the copy BEFORE injecting (a node with debug info is ~13 MiB larger; never strip after).
try {
  execFileSync('strip', ['--strip-all', OUT], { stdio: 'ignore' });
} catch {
  /* no binutils: keep the debug info */
}
const require = createRequire(import.meta.url);
const { inject } = require('postject');
await inject(OUT, 'NODE_SEA_BLOB', readFileSync(`${WORK}/sea-prep.blob`), { sentinelFuse: SENTINEL });
// Do not strip the result: strip rewrites the ELF notes and the injected blob with them (SIGSEGV).

// The SQLite addon for `bootkey server` from the SEA (same Node ABI: the SEA is this node).
const require2 = createRequire(import.meta.url);
const addonSrc = `${require2.resolve('better-sqlite3/package.json').replace(/package\.json$/, '')}build/Release/better_sqlite3.node`;
copyFileSync(addonSrc, 'dist/better_sqlite3.node');
try {
  execFileSync('strip', ['--strip-unneeded', 'dist/better_sqlite3.node'], { stdio: 'ignore' });
} catch {
  /* no binutils */
}

const t0 = process.hrtime.bigint();
const v = execFileSync(OUT, ['--version']).toString().trim();
const startMs = Number(process.hrtime.bigint() - t0) / 1e6;
const mb = (statSync(OUT).size / 1048576).toFixed(1);
console.log(`build-sea: ${OUT} ${mb} MiB (bundle ${(statSync(`${WORK}/bootkey.cjs`).size / 1024).toFixed(0)} KiB, node ${process.version}); "${v}" in ${startMs.toFixed(0)} ms`);

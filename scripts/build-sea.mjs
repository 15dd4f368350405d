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
//      Before that, the copy's built-in ICU data (Node's full-icu `icudtNNl` package, 31 MiB,
//      ~10 MB of the initrd's zstd) is replaced in place by an English-only package cut from it
//      with icupkg (icu-devtools): root/en locales, collation root, time zones, normalisation;
//      other locales fall back to English, CJK/Thai word breaking and the legacy code-page
//      converters of TextDecoder are gone. Nothing in bootkey formats for a locale. Without
//      icupkg the full data stays (a warning says so). BOOTKEY_SEA_ICU=full|en|none
//      (none: zeroed; Intl.DateTimeFormat then aborts the process: measurements only).
//      BOOTKEY_SEA_MINIFY=1 minifies the bundle, BOOTKEY_SEA_CODE_CACHE=1 sets useCodeCache
//      (both measured in docs/INITRD.md "Size and start-up of the executable").
// Checks: the bundle's metafile shows no module importing better-sqlite3 outside src/server/,
// and `bootkey-linux-x64 --version` runs. Prints size and start-up time.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, chmodSync, closeSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';

const OUT = 'dist/bootkey-linux-x64';
const WORK = 'dist/sea';
const SENTINEL = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const ICU = process.env.BOOTKEY_SEA_ICU ?? 'en';
const MINIFY = process.env.BOOTKEY_SEA_MINIFY === '1';
const CODE_CACHE = process.env.BOOTKEY_SEA_CODE_CACHE === '1';
if (!['full', 'en', 'none'].includes(ICU)) throw new Error(`build-sea: BOOTKEY_SEA_ICU=${ICU}: full, en or none`);

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
  minify: MINIFY,
  keepNames: MINIFY, // error classes and codes keep their names
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
  // no useCodeCache by default: see docs/INITRD.md (measured in the TCG guest)
  ...(CODE_CACHE ? { useCodeCache: true } : {}),
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
let icuNote = 'full ICU';
if (ICU !== 'full') icuNote = trimIcu(OUT, ICU);
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
console.log(`build-sea: ${OUT} ${mb} MiB (bundle ${(statSync(`${WORK}/bootkey.cjs`).size / 1024).toFixed(0)} KiB${MINIFY ? ' minified' : ''}${CODE_CACHE ? ', code cache' : ''}, node ${process.version}, ${icuNote}); "${v}" in ${startMs.toFixed(0)} ms`);

/**
 * Replaces the ICU common data built into the node binary FILE (the `icudtNN_dat` symbol, in
 * .dynsym so a stripped binary still names it) in place: `en` = an English-only package cut by
 * icupkg, the rest of the old extent zeroed; `none` = all zeroed. The file keeps its size and
 * layout (the initrd's compressor squeezes the zeros). Returns a note for the build line.
 */
function trimIcu(file, mode) {
  let sym;
  try {
    sym = execFileSync('nm', ['-D', '-S', '--defined-only', file], { maxBuffer: 64 << 20 }).toString().split('\n').map((l) => l.trim().split(/\s+/)).find((f) => /^icudt\d+_dat$/.test(f[3] ?? ''));
  } catch {
    /* no binutils */
  }
  if (!sym) {
    console.warn('build-sea: WARNING: no icudtNN_dat symbol (nm missing, or a node with system/small ICU): ICU left as is');
    return 'ICU as built';
  }
  const [vaddr, size] = [Number.parseInt(sym[0], 16), Number.parseInt(sym[1], 16)];
  const offset = fileOffset(file, vaddr);
  const fd = openSync(file, 'r+');
  try {
    const full = Buffer.alloc(size);
    readSync(fd, full, 0, size, offset);
    if (full.readUInt16LE(2) !== 0x27da || full.toString('latin1', 12, 16) !== 'CmnD') throw new Error(`build-sea: ${sym[3]} at 0x${offset.toString(16)} is not ICU common data`);
    let data = Buffer.alloc(0);
    let note = 'ICU data zeroed';
    if (mode === 'en') {
      const name = `${sym[3].replace(/_dat$/, '')}l`; // icudt78l: the package's name (little-endian)
      const dir = `${WORK}/icu`;
      mkdirSync(dir, { recursive: true });
      writeFileSync(`${dir}/${name}.dat`, full);
      let items;
      try {
        items = execFileSync('icupkg', ['-l', `${dir}/${name}.dat`]).toString().split('\n').filter(Boolean);
      } catch {
        console.warn('build-sea: WARNING: icupkg not found (Debian: icu-devtools): the full ICU data stays (+~9 MB in the initrd)');
        return 'full ICU (no icupkg)';
      }
      const keep = /(^|\/)(root|en|en_US|en_001|en_150|en_GB|pool|res_index)\.res$/;
      const drop = items.filter((i) => !keep.test(i) && (/(^|\/)[a-z]{2,3}(_[A-Za-z0-9]*)*\.res$/.test(i) || /\.(dict|cnv|spp|cfu)$/.test(i) || i === 'unames.icu'));
      writeFileSync(`${dir}/drop.txt`, drop.join('\n') + '\n');
      execFileSync('icupkg', ['--ignore-deps', '-r', `${dir}/drop.txt`, `${dir}/${name}.dat`], { stdio: 'ignore' });
      data = readFileSync(`${dir}/${name}.dat`);
      if (data.length >= size) throw new Error('build-sea: the trimmed ICU data is not smaller');
      note = `ICU data en-only ${(data.length / 1048576).toFixed(1)} of ${(size / 1048576).toFixed(1)} MiB (${items.length - drop.length} of ${items.length} items)`;
    }
    const out = Buffer.alloc(size);
    data.copy(out);
    writeSync(fd, out, 0, size, offset);
    return note;
  } finally {
    closeSync(fd);
  }
}

/** The file offset of virtual address VADDR in an ELF64 little-endian file (its PT_LOAD segments). */
function fileOffset(file, vaddr) {
  const b = readFileSync(file);
  if (b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) throw new Error(`build-sea: ${file} is not an ELF64 LE file`);
  const phoff = Number(b.readBigUInt64LE(0x20));
  const phentsize = b.readUInt16LE(0x36);
  const phnum = b.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    if (b.readUInt32LE(p) !== 1) continue; // PT_LOAD
    const off = Number(b.readBigUInt64LE(p + 8));
    const va = Number(b.readBigUInt64LE(p + 16));
    const filesz = Number(b.readBigUInt64LE(p + 32));
    if (vaddr >= va && vaddr < va + filesz) return off + (vaddr - va);
  }
  throw new Error(`build-sea: 0x${vaddr.toString(16)} is in no PT_LOAD segment of ${file}`);
}

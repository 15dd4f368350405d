/**
 * `npm run bench`: runs every benchmark (event-log parsing, software verification, TPM
 * operations against a fresh swtpm) one after another on one core and prints a table,
 * then one JSON line with all figures (so runs can be compared).
 */
type Bench = () => Promise<Record<string, number>>;

const benches: [string, string, string][] = [
  ['eventlog', './eventlog.ts', 'benchEventlog'],
  ['verify', './verify.ts', 'benchVerify'],
  ['tpm', './tpm.ts', 'benchTpm'],
];

const only = process.argv.slice(2);
const all: Record<string, Record<string, number>> = {};
for (const [name, file, fn] of benches) {
  if (only.length && !only.includes(name)) continue;
  const mod = (await import(file)) as Record<string, Bench>;
  process.stderr.write(`bench: ${name}...\n`);
  const res = await mod[fn]();
  all[name] = res;
  for (const [k, v] of Object.entries(res)) {
    console.log(`${name.padEnd(9)} ${k.padEnd(44)} ${Number.isInteger(v) ? v : v.toFixed(2)}`);
  }
}
console.log(JSON.stringify(all));

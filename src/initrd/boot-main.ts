/**
 * The entry of the single executable (dist/bootkey-linux-x64, scripts/build-sea.mjs):
 * `bootkey initrd-agent ...` runs the initrd's ask-password agent (src/initrd/agent.ts),
 * `bootkey initrd-info DEV...` reports the bootkey tokens to the dracut module;
 * everything else is the normal CLI (src/cli/main.ts), whose server commands load the server
 * and SQLite code only when they run.
 * @module
 */
import { realpathSync } from 'node:fs';

const startupMs = performance.now(); // ms since the process started (performance.timeOrigin)

// A `bootkey server --workers N` worker (node:cluster; BOOTKEY_WORKER set, src/server/cluster.ts) of the single
// executable is started as `EXE EXE server ...` (cluster's script is argv[1], which a SEA sets
// to the executable itself): drop the second EXE so that the CLI sees `server ...` again.
if (process.env.BOOTKEY_WORKER !== undefined && process.argv[2] !== undefined && sameFile(process.argv[2], process.execPath)) process.argv.splice(2, 1);

function sameFile(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

if (process.argv[2] === 'initrd-agent') {
  import('./agent.ts')
    .then((m) => m.agentMain(process.argv.slice(3), startupMs))
    .then(
      (code) => process.exit(code),
      (e: unknown) => {
        process.stdout.write(`bootkey: agent failed: ${(e as Error)?.message ?? String(e)}; use the passphrase prompt\n`);
        process.exit(1);
      },
    );
} else if (process.argv[2] === 'initrd-info') {
  import('./agent.ts')
    .then((m) => m.infoMain(process.argv.slice(3)))
    .then((code) => process.exit(code), (e: unknown) => {
      process.stderr.write(`bootkey: ${(e as Error)?.message ?? String(e)}\n`);
      process.exit(1);
    });
} else {
  void import('../cli/main.ts');
}

/**
 * Runs the bootkey CLI with the verifier commands (src/cli/tpm-verify.ts) registered even
 * before they are wired into src/cli/tpm.ts: node --import tsx test/helpers/verify-cli.ts ARGS...
 */
const { COMMANDS } = await import('../../src/cli/registry.ts');
const { tpmVerifyCommands } = await import('../../src/cli/tpm-verify.ts');
for (const c of tpmVerifyCommands) if (!COMMANDS.some((x) => x.path.join(' ') === c.path.join(' '))) COMMANDS.push(c);
await import('../../src/cli/main.ts');

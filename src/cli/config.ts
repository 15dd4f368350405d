/**
 * `bootkey config check`: reads /etc/bootkey/server.conf or /etc/bootkey/bootkey.conf strictly
 * and names the key and line of the first problem (format: src/config/conf.ts; docs/SERVER.md
 * "Configuration file"). `bootkey server --check-config` does the same for the server, with the
 * environment and flags applied.
 * @module
 */
import { UsageError } from '../errors.ts';
import { type Command, flag, opt, EXIT_OK } from './command.ts';
import { loadMachineConf, exampleMachineConf, MACHINE_CONF_FILE, MACHINE_KEYS } from '../config/machine-conf.ts';
import { exampleServerConf, readConfFile, resolveServerConfig, SERVER_CONF_FILE } from '../config/server-conf.ts';

const check: Command = {
  path: ['config', 'check'],
  summary: 'check /etc/bootkey/bootkey.conf (--machine) or server.conf (--server), naming the bad key and line',
  help: `usage: bootkey config check --machine|--server [--config FILE]

--machine: ${MACHINE_CONF_FILE} (keys: ${Object.keys(MACHINE_KEYS).join(', ')}).
--server:  ${SERVER_CONF_FILE} (as \`bootkey server --check-config\`, without the environment).
Exit status 0 when the file is valid (or absent, without --config), 1 naming FILE:LINE and the key.`,
  options: { machine: { type: 'boolean' }, server: { type: 'boolean' }, config: { type: 'string' } },
  run(args) {
    const machine = flag(args, 'machine'), server = flag(args, 'server');
    if (machine === server) throw new UsageError('config check: give exactly one of --machine, --server');
    const file = opt(args, 'config') ?? (machine ? MACHINE_CONF_FILE : SERVER_CONF_FILE);
    const text = readConfFile(file, opt(args, 'config') === undefined);
    if (text === undefined) {
      process.stdout.write(`${file}: absent (the defaults apply)\n`);
      return EXIT_OK;
    }
    const keys = machine ? Object.keys(loadMachineConf(text, file, true).settings) : Object.keys(resolveServerConfig({ configFile: file, env: {} }).settings);
    process.stdout.write(`${file}: ok (${keys.join(', ') || 'no keys set'})\n`);
    return EXIT_OK;
  },
};

const example: Command = {
  path: ['config', 'example'],
  summary: 'print an example server.conf (--server) or bootkey.conf (--machine), every key commented out',
  help: `usage: bootkey config example --server|--machine

Prints the file packages install as /etc/bootkey/server.conf or /etc/bootkey/bootkey.conf: every
key, commented out, with what it does and its default.`,
  options: { machine: { type: 'boolean' }, server: { type: 'boolean' } },
  run(args) {
    const machine = flag(args, 'machine'), server = flag(args, 'server');
    if (machine === server) throw new UsageError('config example: give exactly one of --machine, --server');
    process.stdout.write(machine ? exampleMachineConf() : exampleServerConf());
    return EXIT_OK;
  },
};

export const configCommands: Command[] = [check, example];

/** `bootkey policy ...` subcommands. */
import type { Command } from './command.ts';

export const policyCommands: Command[] = [];

/** `bootkey eventlog ...` subcommands. */
import type { Command } from './command.ts';

export const eventlogCommands: Command[] = [];

/** `bootkey tpm ...` subcommands. */
import type { Command } from './command.ts';

export const tpmCommands: Command[] = [];

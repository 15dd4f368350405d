/** The list of all subcommands. Each area keeps its commands in its own file. */
import type { Command } from './command.ts';
import { tpmCommands } from './tpm.ts';
import { eventlogCommands } from './eventlog.ts';
import { policyCommands } from './policy.ts';
import { serverCommands } from './server.ts';
import { enrollCommands } from './enroll.ts';
import { unlockCommands } from './unlock.ts';
import { efiCommands } from './efi.ts';
import { configCommands } from './config.ts';
import { setupCommands } from './setup.ts';
import { stageCommands } from './stage.ts';
import { agentCommands } from './agent.ts';
import { imaCommands } from './ima.ts';
import { runtimePolicyCommands } from './runtime-policy.ts';

export const COMMANDS: Command[] = [...tpmCommands, ...eventlogCommands, ...policyCommands, ...serverCommands, ...enrollCommands, ...unlockCommands, ...efiCommands, ...configCommands, ...stageCommands, ...imaCommands, ...runtimePolicyCommands, ...agentCommands, ...setupCommands];

/** bootkey's version: `bootkey --version`, the man pages and the packages (scripts/package.mjs checks it equals package.json's). */
export const VERSION = '0.1.0';

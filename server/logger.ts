/** A small logger: main.ts passes the console one, tests their own (capturing or silent). */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

// Written to the streams directly, as console.log would with one string (without its formatting
// pass: a group of hundreds of files logs a line per file).
export const consoleLogger: Logger = {
  info: (m) => process.stdout.write(`${new Date().toISOString()} ${m}\n`),
  warn: (m) => process.stderr.write(`${new Date().toISOString()} warning: ${m}\n`),
  error: (m) => process.stderr.write(`${new Date().toISOString()} error: ${m}\n`),
};

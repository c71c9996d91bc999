/** A small logger: main.ts passes the console one, tests their own (capturing or silent). */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export const consoleLogger: Logger = {
  info: (m) => console.log(`${new Date().toISOString()} ${m}`),
  warn: (m) => console.warn(`${new Date().toISOString()} warning: ${m}`),
  error: (m) => console.error(`${new Date().toISOString()} error: ${m}`),
};

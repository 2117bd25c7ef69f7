/**
 * Structured JSON logging (pino). Each process makes one root logger named for itself; code that
 * handles an order logs through a child carrying `orderId` and `correlationId`, so one grep follows
 * an order from the HTTP request through every event and activity.
 */
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import { printableJsonLine } from '../domain/text.js';

export type { Logger };

/** `destination`: stdout unless given (tests read the lines). */
export function createLogger(name: string, level: string = 'info', destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    name,
    level,
    base: { process: name },
    timestamp: pino.stdTimeFunctions.isoTime,
    hooks: TERMINAL_SAFE,
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * Logged values include bytes a client or a publisher chose (a request path, a dead letter's type),
 * and log lines end up in terminals (`npm run up`, `kubectl logs`). JSON escapes C0 but not C1 (a
 * one-byte CSI) or the bidirectional overrides: this escapes those too, as JSON escapes, so a line
 * still parses to what was logged.
 */
export const TERMINAL_SAFE: LoggerOptions['hooks'] = { streamWrite: printableJsonLine };

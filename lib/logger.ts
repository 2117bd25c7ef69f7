/**
 * Structured JSON logging (pino). Each process makes one root logger named for itself; code that
 * handles an order logs through a child carrying `orderId` and `correlationId`, so one grep follows
 * an order from the HTTP request through every event and activity.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, level: string = 'info'): Logger {
  return pino({ name, level, base: { process: name }, timestamp: pino.stdTimeFunctions.isoTime });
}

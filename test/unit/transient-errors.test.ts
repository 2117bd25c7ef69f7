/** Which failures consumers wait out (a dependency is down) and which count toward the DLQ. */
import { ServiceError } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { isTransientDatabaseError } from '../../db/pool.js';
import { isTemporalUnavailable } from '../../lib/temporal.js';

const grpc = (code: number) =>
  new ServiceError('Failed to start Workflow', { cause: Object.assign(new Error('x'), { code }) });

describe('isTemporalUnavailable', () => {
  it('is true for no answer (deadline, unavailable) and rate limiting', () => {
    for (const code of [4, 8, 14]) expect(isTemporalUnavailable(grpc(code)), String(code)).toBe(true);
  });
  it('is false for an answer that says no, and for other errors', () => {
    for (const code of [3, 5, 6, 7]) expect(isTemporalUnavailable(grpc(code)), String(code)).toBe(false);
    expect(isTemporalUnavailable(new Error('boom'))).toBe(false);
  });
});

describe('isTransientDatabaseError', () => {
  it('is true for connection loss, shutdown, overload and retryable conflicts', () => {
    for (const code of ['08006', '57P01', '53300', '40001', '40P01', 'ECONNREFUSED']) {
      expect(isTransientDatabaseError(Object.assign(new Error('x'), { code })), code).toBe(true);
    }
    expect(isTransientDatabaseError(new Error('Connection terminated unexpectedly'))).toBe(true);
  });
  it('is false for errors the same query would hit again', () => {
    for (const code of ['23505', '42P01', '22P02']) {
      expect(isTransientDatabaseError(Object.assign(new Error('x'), { code })), code).toBe(false);
    }
  });
});

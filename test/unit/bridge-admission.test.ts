/**
 * The bridge's admission window (workers/bridge-admission.ts) on its own: a count that says how many
 * sagas run, and admissions held until it drops. The bridge test (test/integration/bridge.test.ts)
 * runs it against Temporal's real count.
 */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../lib/logger.js';
import { createAdmissionGate } from '../../workers/bridge-admission.js';

const logger = createLogger('test', 'silent');
const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('admission window', () => {
  it('admits up to the window, holds the rest until runs end, and counts once for all waiters', async () => {
    const admitted: number[] = [];
    let ended = 0;
    let counts = 0;
    const gate = createAdmissionGate({
      maxRunning: 2,
      // Temporal's count: runs started and not ended (visible a moment after the start: see graceMs).
      countRunning: async () => {
        counts += 1;
        return admitted.length - ended;
      },
      logger,
      refreshMs: 20,
      graceMs: 50,
    });
    const waiters = [1, 2, 3, 4].map((i) => gate.admit().then(() => admitted.push(i)));
    await tick(300);
    expect(admitted.sort()).toEqual([1, 2]);
    expect(counts).toBeLessThan(25); // one count per 20 ms for all three waiters, not one each

    ended = 1; // one run ended: one more starts
    await tick(300);
    expect(admitted).toHaveLength(3);
    ended = 3;
    await Promise.all(waiters);
    expect(admitted).toHaveLength(4);
  });

  it('waits ten times as long as a count took before the next, and holds the window meanwhile', async () => {
    const admitted: number[] = [];
    let counts = 0;
    const gate = createAdmissionGate({
      maxRunning: 2,
      // A slow count (a large visibility store) that never sees the runs admitted since it began.
      countRunning: async () => {
        counts += 1;
        await tick(50);
        return 0;
      },
      logger,
      refreshMs: 20,
      graceMs: 10,
    });
    const waiters = [1, 2, 3, 4].map((i) => gate.admit().then(() => admitted.push(i)));
    await tick(300);
    // One count, not one per 20 ms; and the two admitted since it began still fill the window.
    expect(counts).toBe(1);
    expect(admitted).toHaveLength(2);
    await Promise.all(waiters); // the next count, ~500 ms after the first, lets the others in
    expect(counts).toBe(2);
  });

  it('gives up waiting at once when the bridge stops (the message then goes back to the queue)', async () => {
    const gate = createAdmissionGate({
      maxRunning: 1,
      countRunning: async () => 1,
      logger,
      refreshMs: 10_000,
    });
    const stopping = new AbortController();
    const waiting = gate.admit(stopping.signal);
    let settled = false;
    void waiting.catch(() => (settled = true));
    await tick(50);
    expect(settled).toBe(false); // the window is full: it waits
    const abortedAt = performance.now();
    stopping.abort();
    await expect(waiting).rejects.toThrow();
    expect(performance.now() - abortedAt).toBeLessThan(100); // not the 10 s refresh
    await expect(gate.admit(stopping.signal)).rejects.toThrow(); // nor does a later one wait
  });

  it('does not hold a stop for a count in flight (one may take up to the start timeout)', async () => {
    const gate = createAdmissionGate({
      maxRunning: 1,
      countRunning: () => new Promise<number>(() => {}), // Temporal not answering
      logger,
    });
    const stopping = new AbortController();
    const waiting = gate.admit(stopping.signal);
    await tick(50);
    const abortedAt = performance.now();
    stopping.abort();
    await expect(waiting).rejects.toThrow();
    expect(performance.now() - abortedAt).toBeLessThan(100);
  });

  it('admits everything with no window, and without counting', async () => {
    let counts = 0;
    const gate = createAdmissionGate({
      maxRunning: 0,
      countRunning: async () => ++counts,
      logger,
    });
    await Promise.all(Array.from({ length: 50 }, () => gate.admit()));
    expect(counts).toBe(0);
  });

  it('admits when Temporal cannot count (the start then waits out the outage)', async () => {
    const gate = createAdmissionGate({
      maxRunning: 1,
      countRunning: () => Promise.reject(new Error('UNAVAILABLE')),
      logger,
      refreshMs: 10,
      graceMs: 0,
    });
    await gate.admit();
    await tick(20);
    await gate.admit();
  });

  it('admits a message that has waited maxWaitMs, full window or not', async () => {
    const gate = createAdmissionGate({
      maxRunning: 1,
      countRunning: async () => 5,
      logger,
      refreshMs: 10,
      maxWaitMs: 80,
    });
    const started = Date.now();
    await gate.admit();
    expect(Date.now() - started).toBeGreaterThanOrEqual(80);
  });
});

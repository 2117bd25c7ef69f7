/**
 * Where `orders reset` resets a run to (ops/reset.ts resetPoint), on histories shaped like the
 * saga's: a run whose compensation failed goes back to just before that compensation, so it runs
 * again; any other run to its last completed workflow task.
 */
import proto from '@temporalio/proto';
import { describe, expect, test } from 'vitest';
import { resetPoint } from '../../ops/reset.js';

type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;
const T = proto.temporal.api.enums.v1.EventType;

/** A history from a compact list: ['task'] is a workflow task scheduled, started and completed. */
function history(
  steps: Array<['task'] | ['activity', string, 'completed' | 'failed' | 'timed-out'] | ['failed']>,
) {
  const events: HistoryEvent[] = [];
  const add = (eventType: number, attributes: Partial<HistoryEvent> = {}) => {
    // Ids are Longs in the SDK's types; numbers are what the decoder hands back for small ones.
    const eventId = (events.length + 1) as unknown as HistoryEvent['eventId'];
    events.push({ eventId, eventType, ...attributes });
    return events.length;
  };
  const id = (n: number) => n as unknown as HistoryEvent['eventId'];
  add(T.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED);
  let lastTask = 0;
  for (const step of steps) {
    if (step[0] === 'task') {
      add(T.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED);
      add(T.EVENT_TYPE_WORKFLOW_TASK_STARTED);
      lastTask = add(T.EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
    } else if (step[0] === 'activity') {
      const [, name, outcome] = step;
      const scheduled = add(T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, {
        activityTaskScheduledEventAttributes: {
          activityType: { name },
          workflowTaskCompletedEventId: id(lastTask),
        },
      });
      add(T.EVENT_TYPE_ACTIVITY_TASK_STARTED);
      if (outcome === 'completed')
        add(T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, {
          activityTaskCompletedEventAttributes: { scheduledEventId: id(scheduled) },
        });
      else if (outcome === 'failed')
        add(T.EVENT_TYPE_ACTIVITY_TASK_FAILED, {
          activityTaskFailedEventAttributes: { scheduledEventId: id(scheduled) },
        });
      else
        add(T.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT, {
          activityTaskTimedOutEventAttributes: { scheduledEventId: id(scheduled) },
        });
    } else {
      add(T.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED);
    }
  }
  return events;
}

describe('a run whose compensation failed', () => {
  test('is reset to the workflow task that scheduled it, not past its failure', () => {
    const events = history([
      ['task'], // 2-4
      ['activity', 'reserveInventory', 'completed'], // 5-7
      ['task'], // 8-10
      ['activity', 'chargePayment', 'failed'], // 11-13: a forward step's failure is not a compensation's
      ['task'], // 14-16
      ['activity', 'releaseInventory', 'failed'], // 17-19
      ['task'], // 20-22
      ['failed'],
    ]);
    expect(resetPoint(events)).toEqual({
      eventId: 16,
      eventType: T.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
      why: 'just before the failed compensation releaseInventory (event 17), which runs again',
    });
  });

  test('goes back to the first one that failed, so every compensation after it runs again too', () => {
    const events = history([
      ['task'],
      ['activity', 'reserveInventory', 'completed'],
      ['task'],
      ['activity', 'chargePayment', 'completed'],
      ['task'], // 14-16
      ['activity', 'refundPayment', 'timed-out'], // 17-19
      ['task'], // 20-22
      ['activity', 'releaseInventory', 'failed'],
      ['task'],
      ['failed'],
    ]);
    expect(resetPoint(events)).toMatchObject({ eventId: 16, why: expect.stringContaining('refundPayment') });
  });
});

describe('any other run', () => {
  test('is reset to its last completed workflow task, compensations that succeeded included', () => {
    const events = history([
      ['task'],
      ['activity', 'reserveInventory', 'completed'],
      ['task'],
      ['activity', 'releaseInventory', 'completed'],
      ['task'], // 14-16
    ]);
    expect(resetPoint(events)).toEqual({
      eventId: 16,
      eventType: T.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
      why: 'the last completed workflow task',
    });
  });

  test('that never completed a workflow task is reset to its first one; one that never started one, nowhere', () => {
    const started: HistoryEvent[] = [
      {
        eventId: 1 as unknown as HistoryEvent['eventId'],
        eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
      },
      { eventId: 2 as unknown as HistoryEvent['eventId'], eventType: T.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED },
    ];
    expect(resetPoint(started)).toBeUndefined();
    const failing = [
      ...started,
      { eventId: 3 as unknown as HistoryEvent['eventId'], eventType: T.EVENT_TYPE_WORKFLOW_TASK_STARTED },
      { eventId: 4 as unknown as HistoryEvent['eventId'], eventType: T.EVENT_TYPE_WORKFLOW_TASK_FAILED },
    ];
    expect(resetPoint(failing)).toEqual({
      eventId: 3,
      eventType: T.EVENT_TYPE_WORKFLOW_TASK_STARTED,
      why: 'the first workflow task',
    });
  });
});

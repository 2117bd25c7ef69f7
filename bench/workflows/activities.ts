/**
 * No-op activities for the bare baselines (bench/workflows/naive.ts and saga-shape.ts). They return
 * at once, so a bare run measures what Temporal (server, SDK, worker) costs for a workflow of that
 * shape, with no database, broker or gateway behind it.
 */

/** The naive baseline's one activity, called four times. */
export async function noop(step: number): Promise<number> {
  return step;
}

interface BareStepArgs {
  orderId: string;
  run?: number;
  correlationId: string;
  kind?: string;
}

// The saga's activity names, so the bare copy's history carries the same activity types.
export async function reserveInventory(_args: BareStepArgs): Promise<{ outcome: 'RESERVED' }> {
  return { outcome: 'RESERVED' };
}

export async function chargePayment(_args: BareStepArgs): Promise<{ reference: string }> {
  return { reference: 'bare' };
}

export async function notifyCustomer(args: BareStepArgs): Promise<{ kind: string; sent: boolean }> {
  return { kind: args.kind ?? 'order-completed', sent: true };
}

export async function completeOrder(_args: BareStepArgs): Promise<{ status: 'COMPLETED' }> {
  return { status: 'COMPLETED' };
}

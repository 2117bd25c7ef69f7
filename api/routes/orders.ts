/**
 * /orders: place, read, list and cancel orders. The saga does the rest (README "Architecture"); this
 * router only writes the order with its `order.placed` event, and reads what the saga recorded.
 */
import { createRoute, z } from '@hono/zod-openapi';
import { workflowUiUrl } from '../../lib/temporal.js';
import {
  DEFAULT_RETRY_REASON,
  NEVER_RETRIED,
  isFinal,
  mayBeCancelledNow,
  type OrderStatus,
} from '../../domain/order.js';
import { orderWorkflowId } from '../../workflows/contract.js';
import { decodeCursor, encodeCursor } from '../cursor.js';
import { callerKey, customerScope, operatorsOnly, type Principal } from '../auth.js';
import {
  DEFAULT_CANCEL_CODE,
  LEGACY_REASON_CODE,
  cancelCodeOf,
  cancelWording,
  isStaffCancelCode,
} from '../../domain/cancel.js';
import type { ApiMetrics } from '../../lib/metrics.js';
import type { AppDeps } from '../env.js';
import { ApiError, notFound } from '../errors.js';
import { jsonBody } from '../middleware/json-body.js';
import { placeOrder } from '../../db/order-placement.js';
import { getOrder, listOrders } from '../../db/order-views.js';
import { retryOrder } from '../../db/order-retries.js';
import {
  cancelOrderWithoutSaga,
  getOrderStatus,
  recordCancelReason,
  recordCancelRequest,
  cancelledWith,
} from '../../db/orders.js';
import { orderRequestHash } from '../request-hash.js';
import { createRouter } from '../router.js';
import {
  CancelOrderBodySchema,
  CancelResultSchema,
  CreateOrderBodySchema,
  IdempotencyHeadersSchema,
  LIMITS,
  ListOrdersQuerySchema,
  OrderIdParamsSchema,
  OrderPageSchema,
  OrderSchema,
  RetryOrderBodySchema,
  authResponses,
  bearerSecurity,
  errorResponse,
  retryAfterHeader,
  writeResponses,
  type CancelOrderBody,
  type OrderView,
} from '../schemas.js';

const security = bearerSecurity;

const locationHeader = z.object({
  Location: z.string().openapi({ example: '/orders/0b7e6c1e-8f4e-4a7c-9a43-3f0f8f7c2b1d' }),
});
const orderJson = { 'application/json': { schema: OrderSchema } };

export function ordersRouter(deps: AppDeps & { metrics: ApiMetrics }) {
  const maxBytes = deps.maxBodyBytes ?? LIMITS.maxBodyBytes;
  const router = createRouter();

  /**
   * The order as the caller may see it: a customer sees only its own, an operator every one. The
   * link into the Temporal Web UI is an operator's: it names an internal host, and the UI shows every
   * customer's workflows.
   */
  async function orderView(orderId: string, principal: Principal): Promise<OrderView | undefined> {
    const order = await getOrder(deps.pool, orderId, { customerId: customerScope(principal) });
    if (!order) return undefined;
    const id = orderWorkflowId(orderId);
    const workflow =
      principal.kind === 'operator' ? { id, url: workflowUiUrl(deps.config, orderId) } : { id };
    return { ...order, workflow };
  }

  // ---------------------------------------------------------------------------- POST /orders
  const placeRoute = createRoute({
    method: 'post',
    path: '/',
    tags: ['orders'],
    summary: 'Place an order',
    description:
      'Stores the order (status PENDING) and its `order.placed` event in one transaction; the saga ' +
      'then reserves stock, charges and notifies. Prices come from the catalogue. With an ' +
      '`Idempotency-Key`, a retry of the same request returns the same order (200).',
    security,
    middleware: [jsonBody({ maxBytes })],
    request: {
      headers: IdempotencyHeadersSchema,
      body: { required: true, content: { 'application/json': { schema: CreateOrderBodySchema } } },
    },
    responses: {
      202: {
        description: 'Accepted; processing continues asynchronously.',
        headers: locationHeader,
        content: orderJson,
      },
      200: {
        description: 'Replay: this Idempotency-Key already placed this order (current state shown).',
        headers: locationHeader,
        content: orderJson,
      },
      400: errorResponse('Malformed JSON or a field failed validation (`fields` names each).'),
      409: errorResponse(
        'The Idempotency-Key was already used with a different request (`idempotency_key_reused`).',
      ),
      422: errorResponse(
        'An item names a SKU that is not in the catalogue (`unknown_sku`), the items mix currencies ' +
          '(`mixed_currencies`), or the total is above the limit (`total_too_large`).',
      ),
      ...writeResponses,
    },
  });

  router.openapi(placeRoute, async (c) => {
    const body = c.req.valid('json');
    const idempotencyKey = c.req.valid('header')['idempotency-key'];
    const customerId = orderingCustomer(c.var.principal, body.customer_id);
    const outcome = await placeOrder(deps.pool, {
      customerId,
      email: body.email,
      items: body.items,
      idempotencyKey,
      requestHash: orderRequestHash({ ...body, customer_id: customerId }),
      correlationId: c.var.correlationId,
      keyRetentionHours: deps.config.IDEMPOTENCY_KEY_RETENTION_HOURS,
      maxTotal: deps.config.EVENT_MAX_AMOUNT,
    });
    switch (outcome.kind) {
      case 'unknown_skus':
        throw new ApiError(
          422,
          'unknown_sku',
          'Some items name SKUs that are not in the catalogue (GET /products).',
          {
            fields: outcome.indexes.map((i) => ({
              path: `items[${i}].sku`,
              message: `unknown SKU ${JSON.stringify(body.items[i]?.sku)}`,
            })),
          },
        );
      case 'mixed_currencies':
        throw new ApiError(
          422,
          'mixed_currencies',
          'All items of one order must be priced in one currency.',
          {
            fields: [{ path: 'items', message: `mixes ${outcome.currencies.join(', ')}` }],
          },
        );
      case 'total_too_large':
        throw new ApiError(
          422,
          'total_too_large',
          `The order's total is more than ${outcome.max} can be taken.`,
          {
            fields: [{ path: 'items', message: `total ${outcome.total} is above the limit ${outcome.max}` }],
          },
        );
      case 'idempotency_conflict':
        throw new ApiError(
          409,
          'idempotency_key_reused',
          'This Idempotency-Key was already used for a different request; use a new key for a new order.',
        );
    }
    // Counted once written, before the read for the answer: a failed read (answered 500, and its
    // retry a replay) must not leave an accepted order uncounted.
    if (outcome.kind !== 'replayed') deps.metrics.accepted();
    c.set('orderId', outcome.orderId);
    const view = await orderView(outcome.orderId, c.var.principal);
    if (!view) throw new Error(`order ${outcome.orderId} vanished right after it was written`);
    c.header('Location', `/orders/${view.id}`);
    if (outcome.kind === 'replayed') {
      c.header('Idempotent-Replayed', 'true');
      c.var.log.info({ orderId: view.id }, 'idempotent replay of an order');
      return c.json(view, 200);
    }
    c.var.log.info({ orderId: view.id, total: view.total, currency: view.currency }, 'order placed');
    return c.json(view, 202);
  });

  // ----------------------------------------------------------------------------- GET /orders
  const listRoute = createRoute({
    method: 'get',
    path: '/',
    tags: ['orders'],
    summary: 'List orders, newest first',
    description:
      'Keyset pagination: follow `nextCursor` until it is null. Unknown query parameters are rejected. ' +
      "A customer's token lists its own orders only; an operator's lists everyone's.",
    security,
    request: { query: ListOrdersQuerySchema },
    responses: {
      200: { description: 'One page.', content: { 'application/json': { schema: OrderPageSchema } } },
      400: errorResponse(
        'A query parameter is invalid (`fields` names it), or the cursor belongs elsewhere.',
      ),
      ...authResponses,
    },
  });

  router.openapi(listRoute, async (c) => {
    const query = c.req.valid('query');
    const principal = c.var.principal;
    const own = customerScope(principal);
    if (own !== undefined && query.customer_id !== undefined && query.customer_id !== own) {
      throw new ApiError(403, 'forbidden', "A customer's token lists only its own orders; omit customer_id.");
    }
    const customerId = own ?? query.customer_id;
    const binding = { caller: callerKey(principal), status: query.status, customerId: query.customer_id };
    const page = await listOrders(deps.pool, {
      status: query.status,
      customerId,
      after: query.cursor === undefined ? undefined : decodeCursor(query.cursor, binding),
      limit: query.limit,
    });
    return c.json(
      { items: page.orders, nextCursor: page.next ? encodeCursor(page.next, binding) : null },
      200,
    );
  });

  // ------------------------------------------------------------------------- GET /orders/{id}
  const getRoute = createRoute({
    method: 'get',
    path: '/{id}',
    tags: ['orders'],
    summary: 'One order with items, payment, notifications, event timeline and workflow link',
    security,
    request: { params: OrderIdParamsSchema },
    responses: {
      200: { description: 'The order.', content: orderJson },
      400: errorResponse('The id is not a UUID.'),
      404: errorResponse("No such order (or another customer's)."),
      ...authResponses,
    },
  });

  router.openapi(getRoute, async (c) => {
    const { id } = c.req.valid('param');
    const view = await orderView(id, c.var.principal);
    if (!view) throw notFound('Order', id);
    return c.json(view, 200);
  });

  // ------------------------------------------------------------------ POST /orders/{id}/cancel
  const cancelRoute = createRoute({
    method: 'post',
    path: '/{id}/cancel',
    tags: ['orders'],
    summary: 'Cancel an order before its payment is captured',
    description:
      "If the order's saga is running, it is asked to cancel (it compensates: stock back). If the saga has " +
      'not started yet, the order is cancelled directly and the saga ends when it starts. Too late once paid, ' +
      'unless a run that failed after the charge refunded it (then, once that run has ended, it is cancelled directly). ' +
      "The `code` picks the wording of the customer's e-mail; the `note` is stored with the order and never e-mailed. " +
      'A customer may cancel only its own orders, and not with the staff codes `payment_issue` and `suspected_fraud`; ' +
      'an operator any order, with any code.',
    security,
    middleware: [jsonBody({ maxBytes, optional: true })],
    request: {
      params: OrderIdParamsSchema,
      body: { required: false, content: { 'application/json': { schema: CancelOrderBodySchema } } },
    },
    responses: {
      200: {
        description: 'Cancel accepted.',
        content: { 'application/json': { schema: CancelResultSchema } },
      },
      400: errorResponse('The id is not a UUID, or the body is invalid.'),
      404: errorResponse("No such order (or another customer's)."),
      409: errorResponse(
        'Too late (already paid or being undone), already final, or no saga running; `message` says why, ' +
          '`status` is current. A refused cancel still stops any later retry of the order.',
      ),
      ...writeResponses,
      403: errorResponse(
        'The token is valid but may not do this (`forbidden`); a customer giving a staff-only `code` names it.',
      ),
      500: errorResponse(
        'Accepted, but a compensation failed (`cancel_incomplete`): the order needs an operator; asking again will not help.',
      ),
      503: {
        ...errorResponse(
          'The workflow service did not answer in time (`workflow_unavailable`); retrying is safe.',
        ),
        headers: retryAfterHeader,
      },
    },
  });

  router.openapi(cancelRoute, async (c) => {
    const { id } = c.req.valid('param');
    const { code, note } = cancelRequest(c.req.valid('json'));
    if (c.var.principal.kind === 'customer' && isStaffCancelCode(code)) {
      // Before anything is recorded: a refused request must not mark the order as cancel-requested.
      throw new ApiError(403, 'forbidden', `Only an operator may cancel with code ${code}.`, {
        fields: [{ path: 'code', message: 'is for operators only' }],
      });
    }
    // The saga, the status reason, the event and the e-mail get the code's fixed wording only.
    const reason = cancelWording(code);
    const log = c.var.log.child({ orderId: id });
    const recordReason = (confirmed: boolean) => recordCancelReason(deps.pool, id, { code, note, confirmed });

    // Marked before the answer is known: refused or lost, the cancel still stops any later retry.
    const recorded = await recordCancelRequest(deps.pool, id, { customerId: customerScope(c.var.principal) });
    if (recorded === undefined) throw notFound('Order', id);
    const { status } = recorded;
    if (status === 'CANCELLED') {
      // Asked again (its first answer lost, or a 503's "retrying is safe"): the order is cancelled as
      // asked, so the answer is the same success; the first cancel's code and note stand.
      return c.json(
        { id, status, via: 'already' as const, ...wording(await cancelledWith(deps.pool, id)) },
        200,
      );
    }
    const verdict = mayBeCancelledNow(status, { runUndone: recorded.runUndone });
    if (!verdict.ok) throw cancelRefused(status, verdict.reason);

    // Twice at most: the saga may start between "no workflow" and the direct cancel.
    for (let attempt = 1; attempt <= 2; attempt++) {
      const outcome = await deps.workflows.cancel(id, reason);
      switch (outcome.kind) {
        case 'accepted': {
          log.info({ status: outcome.status, code }, 'cancel accepted by the saga');
          // One cancel per order: a request that joined one made first with another code (an
          // operator's and the customer's at once) leaves that one's code and note as the record,
          // since the saga, the event and the e-mail use its wording. Any other answer (an older
          // saga's, without the wording; the saga's own words for a cancel it found recorded)
          // records this request's.
          const used = outcome.reason === undefined ? undefined : cancelCodeOf(outcome.reason);
          if (used === undefined || used === code) await recordReason(true);
          else log.info({ code, sagaCode: used }, 'cancel joined an earlier one; its reason stands');
          // The words the order is cancelled with, so a request that joined another's learns they are
          // not its own: the saga's; an older saga that gave none wrote them on the order before it
          // answered. None while the saga is still cancelling (status not yet CANCELLED).
          const words =
            outcome.status !== 'CANCELLED'
              ? undefined
              : (outcome.reason ?? (await cancelledWith(deps.pool, id)));
          return c.json({ id, status: outcome.status, via: 'workflow' as const, ...wording(words) }, 200);
        }
        case 'incomplete':
          log.error({ code }, 'cancel not completed: a compensation failed; the order needs an operator');
          // Recorded only when the saga was cancelling with this request's wording.
          if (outcome.reason !== undefined && cancelCodeOf(outcome.reason) === code) await recordReason(true);
          throw new ApiError(
            500,
            'cancel_incomplete',
            "The cancel could not be completed: giving the order's stock or money back failed. The order " +
              'needs an operator, who has been alerted (its run failed); asking again will not help.',
            { details: { status: (await getOrderStatus(deps.pool, id)) ?? status } },
          );
        case 'rejected':
          log.info({ reason: outcome.reason }, 'cancel rejected by the saga');
          // A PAID order whose run failed after the charge: its saga is still giving the money back.
          throw new ApiError(
            409,
            'cancel_rejected',
            status === 'PAID' && recorded.runUndone
              ? "The order's run failed after the charge and is still giving the payment back; once it has " +
                  'ended, asking again cancels the order.'
              : outcome.reason,
            {
              details: { status: (await getOrderStatus(deps.pool, id)) ?? status },
            },
          );
        case 'timeout':
        case 'unavailable':
          log.warn({ outcome: outcome.kind }, 'cancel: the workflow service did not answer');
          // The saga may have taken it (a compensation waiting out an outage answers late); if its run
          // then stops, `orders settle` finishes the cancel with the code recorded here, and the note
          // is kept. Unconfirmed: a cancel the saga then carries out in other words replaces it.
          await recordReason(false);
          throw new ApiError(
            503,
            'workflow_unavailable',
            "The order's workflow did not answer in time; the cancel may still take effect. Retrying is safe.",
          );
        case 'not_running': {
          const direct = await cancelOrderWithoutSaga(deps.pool, id, reason);
          if (direct.kind === 'cancelled') {
            log.info({ code }, 'cancelled with no saga running');
            // The order ended here, not in a saga step (which will find it cancelled): counted here,
            // first, so that a failure recording the reason cannot leave it uncounted.
            deps.metrics.finished('CANCELLED', direct.placedAt);
            await recordReason(true);
            return c.json({ id, status: 'CANCELLED' as const, via: 'database' as const, reason }, 200);
          }
          if (direct.kind === 'not_found') throw notFound('Order', id);
          if (direct.status === 'CANCELLED') {
            // Cancelled since this request found it open: by a cancel made at the same moment (the
            // customer's and an operator's). One cancel, and both are answered 200; this one's code
            // and note are kept only if that one recorded none.
            await recordReason(false);
            return c.json(
              {
                id,
                status: 'CANCELLED' as const,
                via: 'database' as const,
                ...wording(await cancelledWith(deps.pool, id)),
              },
              200,
            );
          }
          if (isFinal(direct.status)) throw cancelRefused(direct.status);
          if (attempt === 2) {
            // Still no saga running, and the order cannot be cancelled without one: an operator's case.
            log.warn(
              { status: direct.status, reason: direct.reason },
              'cancel: no saga running to cancel it',
            );
            // Recorded with the request, unconfirmed: a settlement finishes this cancel in its words.
            await recordReason(false);
            throw new ApiError(409, 'cancel_unavailable', direct.reason, {
              details: { status: direct.status },
            });
          }
        }
      }
    }
    throw new Error('unreachable: cancel loop ended without an answer');
  });

  // ------------------------------------------------------------------- POST /orders/{id}/retry
  const retryRoute = createRoute({
    method: 'post',
    path: '/{id}/retry',
    tags: ['orders'],
    summary: 'Run a failed order again, as a new run, once its cause is fixed',
    description:
      'For a PAYMENT_FAILED order with no money taken, or an order a failed run left unfinished: the order ' +
      'goes back to PENDING as run n+1 with an `order.retried` event, and the saga runs again as a new run ' +
      'of workflow `order-<id>`. Asking again while that retry is under way starts nothing more. Operators only.',
    security,
    middleware: [operatorsOnly('retry an order'), jsonBody({ maxBytes, optional: true })],
    request: {
      params: OrderIdParamsSchema,
      body: { required: false, content: { 'application/json': { schema: RetryOrderBodySchema } } },
    },
    responses: {
      202: {
        description: 'Retry started, or already under way; the order as it now stands.',
        content: orderJson,
      },
      400: errorResponse('The id is not a UUID, or the body is invalid.'),
      404: errorResponse('No such order.'),
      409: errorResponse('The order may not be retried; `message` says why, `status` is current.'),
      ...writeResponses,
      403: errorResponse('Not an operator: only operators may retry (`forbidden`).'),
      503: {
        ...errorResponse('The workflow service did not answer (`workflow_unavailable`); retrying is safe.'),
        headers: retryAfterHeader,
      },
    },
  });

  router.openapi(retryRoute, async (c) => {
    const { id } = c.req.valid('param');
    const reason = c.req.valid('json').reason ?? DEFAULT_RETRY_REASON;
    const log = c.var.log.child({ orderId: id });
    const outcome = await retryOrder(deps.pool, id, {
      reason,
      // Asked under the order's row lock; no answer rolls the retry back.
      latest: async () => {
        const latest = await deps.workflows.latestRun(id);
        if (latest.kind === 'unavailable') {
          throw new ApiError(
            503,
            'workflow_unavailable',
            'The workflow service did not answer; retrying is safe.',
          );
        }
        return latest.kind === 'found' ? latest : undefined;
      },
    });
    switch (outcome.kind) {
      case 'not_found':
        throw notFound('Order', id);
      case 'refused':
        throw new ApiError(409, 'retry_refused', outcome.reason, { details: { status: outcome.status } });
      case 'retried':
        log.info({ run: outcome.run, previousStatus: outcome.previousStatus, reason }, 'order retried');
        break;
      case 'already_retrying':
        log.info({ run: outcome.run }, 'retry already under way');
    }
    const view = await orderView(id, c.var.principal);
    if (!view) throw notFound('Order', id);
    return c.json(view, 202);
  });

  return router;
}

/**
 * Whose order a POST places: a customer's own (a body naming another is a 403), or the customer an
 * operator names.
 */
function orderingCustomer(principal: Principal, bodyCustomerId: string | undefined): string {
  if (principal.kind === 'customer') {
    if (bodyCustomerId !== undefined && bodyCustomerId !== principal.customerId) {
      throw new ApiError(
        403,
        'forbidden',
        "A customer orders only as itself: omit customer_id, or send the token's own.",
      );
    }
    return principal.customerId;
  }
  if (bodyCustomerId === undefined) {
    throw new ApiError(400, 'validation_failed', 'Invalid request body: check customer_id.', {
      fields: [{ path: 'customer_id', message: 'is required when an operator places an order' }],
    });
  }
  return bodyCustomerId;
}

/** The cancel body, old or new form, as a code and an optional note. */
function cancelRequest(body: CancelOrderBody): {
  code: CancelOrderBody['code'] & string;
  note: string | undefined;
} {
  if (body.reason !== undefined) return { code: LEGACY_REASON_CODE, note: body.reason };
  return { code: body.code ?? DEFAULT_CANCEL_CODE, note: body.note };
}

/** The wording a cancelled order was cancelled with, for the answer (absent when none is known). */
const wording = (reason: string | null | undefined): { reason?: string } => (reason ? { reason } : {});

/** 409: a final order (`order_final`), or one the domain rule refuses now (`cancel_rejected`). */
function cancelRefused(status: OrderStatus, reason?: string): ApiError {
  if (isFinal(status)) {
    return new ApiError(
      409,
      'order_final',
      `The order is already ${status} and can no longer be cancelled.` +
        // recordCancelRequest kept the request on an order a retry could run again.
        (NEVER_RETRIED.includes(status) ? '' : ' Your request is kept: it will not be run or charged again.'),
      {
        details: { status },
      },
    );
  }
  return new ApiError(409, 'cancel_rejected', reason ?? 'The order cannot be cancelled now.', {
    details: { status },
  });
}

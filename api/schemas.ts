/**
 * Every request and response shape of the HTTP API, as zod schemas. The same schemas validate the
 * requests (via @hono/zod-openapi's route validators) and generate `GET /openapi.json`, so the
 * documentation cannot drift from what the server accepts.
 *
 * Conventions:
 * - Request bodies and query strings use snake_case (`customer_id`), as in the original design's
 *   curl examples; responses use camelCase (`customerId`, `correlationId`).
 * - Unknown fields are rejected (400, named in `fields`), not ignored: a misspelt `quantity` must
 *   not silently become an order for the default amount.
 * - Money is a decimal string (`"19.99"`), never a JSON number.
 */
import { z } from '@hono/zod-openapi';
import { ORDER_STATUSES } from '../domain/order.js';
import { PAYMENT_STATUSES } from '../domain/payment.js';
import { ERROR_CODES, type ErrorCode } from './errors.js';
import {
  BIDI_CONTROLS,
  LINE_SEPARATORS,
  MAX_NOTE_LENGTH,
  WITHOUT_CONTROL_CHARACTERS,
  textProblem,
} from '../domain/text.js';
import { CANCEL_CODES } from '../domain/cancel.js';

export const LIMITS = {
  /** Items per order. */
  maxItems: 50,
  /** Units per line. */
  maxQty: 1000,
  maxIdempotencyKeyLength: 255,
  maxReasonLength: MAX_NOTE_LENGTH,
  /** Orders per page of `GET /orders`. */
  maxPageSize: 100,
  defaultPageSize: 20,
  /** Request bodies; far above the largest valid order, so only abuse hits it. */
  maxBodyBytes: 32 * 1024,
} as const;

/** "is required" when the value is missing, else the type complaint. */
const typeError = (expected: string) => (issue: { input?: unknown }) =>
  issue.input === undefined ? 'is required' : `must be ${expected}`;

const PRINTABLE = /^[\x21-\x7e]+$/;

/**
 * Free text from a client that the system stores and shows (a cancel reason): text PostgreSQL can
 * store and nothing that forges a log line (domain/text.ts), refused with a 400 naming the field.
 */
const storableText = () =>
  z
    .string({ error: typeError('a string') })
    // Published in the OpenAPI schema as its `pattern`, so clients (and fuzzers) know the rule.
    .regex(WITHOUT_CONTROL_CHARACTERS, 'must not contain control characters')
    .superRefine((text, ctx) => {
      const problem = textProblem(text);
      if (problem !== undefined && WITHOUT_CONTROL_CHARACTERS.test(text)) {
        ctx.addIssue({ code: 'custom', message: problem });
      }
    });

// ---------------------------------------------------------------------------------------- inputs

export const SkuSchema = z
  .string({ error: typeError('a string') })
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  .regex(PRINTABLE, 'must be printable ASCII without spaces')
  .openapi({ example: 'TSHIRT-BLK-M' });

export const CustomerIdSchema = z
  .string({ error: typeError('a string') })
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, 'may contain only letters, digits and . _ : - (no spaces)')
  .openapi({ example: 'C100' });

/** Lower-cased, as PostgreSQL prints it, so one order has one spelling (and one workflow id). */
export const OrderIdSchema = z
  .guid({ error: 'must be a UUID' })
  .overwrite((id) => id.toLowerCase())
  .openapi({
    example: '0b7e6c1e-8f4e-4a7c-9a43-3f0f8f7c2b1d',
  });

export const OrderItemInputSchema = z
  .strictObject({
    sku: SkuSchema,
    qty: z
      .number({ error: typeError('a number') })
      .int('must be a whole number')
      .min(1, 'must be at least 1')
      .max(LIMITS.maxQty, `must be at most ${LIMITS.maxQty}`)
      .openapi({ example: 1 }),
  })
  .openapi('OrderItemInput');

export const CreateOrderBodySchema = z
  .strictObject({
    customer_id: CustomerIdSchema.optional().openapi({
      description:
        "Whose order this is. A customer's token decides it (omit it, or send the token's own `sub`: " +
        'another is a 403); an operator placing an order for a customer must name them.',
    }),
    email: z
      .email({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be an e-mail address') })
      .max(254, 'must be at most 254 characters')
      .openapi({ example: 'c100@example.com' }),
    items: z
      .array(OrderItemInputSchema, { error: typeError('an array of items') })
      .min(1, 'must contain at least one item')
      .max(LIMITS.maxItems, `must contain at most ${LIMITS.maxItems} items`)
      .superRefine((items, ctx) => {
        const seen = new Map<string, number>();
        items.forEach((item, index) => {
          const first = seen.get(item.sku);
          if (first === undefined) seen.set(item.sku, index);
          else
            ctx.addIssue({
              code: 'custom',
              path: [index, 'sku'],
              message: `duplicates items[${first}].sku; put the total quantity on one line`,
            });
        });
      }),
  })
  .openapi('CreateOrderRequest', {
    description: 'Unknown fields are rejected. Prices come from the catalogue, never from the client.',
  });
export type CreateOrderBody = z.infer<typeof CreateOrderBodySchema>;

export const IdempotencyHeadersSchema = z.object({
  'idempotency-key': z
    .string()
    .min(1, 'must not be empty')
    .max(LIMITS.maxIdempotencyKeyLength, `must be at most ${LIMITS.maxIdempotencyKeyLength} characters`)
    .regex(PRINTABLE, 'must be printable ASCII without spaces')
    .optional()
    .openapi({
      // Header names are case-insensitive; the key must match the validator's lower-cased view.
      param: { name: 'idempotency-key', in: 'header' },
      description:
        'Retrying with the same key and body returns the same order; the same key with another body is a 409.',
      example: '2f1c9a52-checkout-1',
    }),
});

/**
 * Why an order is cancelled, from a fixed list: the customer's e-mail says the code's wording
 * (domain/cancel.ts), never anything a client typed.
 */
export const CancelCodeSchema = z
  .enum(CANCEL_CODES, { error: `must be one of ${CANCEL_CODES.join(', ')}` })
  .openapi('CancelCode', { example: 'changed_mind' });

/** A note people will read: a cancel note, a retry's reason (domain/text.ts noteProblem). */
const note = () =>
  storableText()
    .trim()
    .min(1, 'must not be empty')
    .max(LIMITS.maxReasonLength, `must be at most ${LIMITS.maxReasonLength} characters`)
    .refine((text) => !BIDI_CONTROLS.test(text), 'must not contain bidirectional control characters')
    .refine((text) => !LINE_SEPARATORS.test(text), 'must be one line (no line or paragraph separators)');

export const CancelOrderBodySchema = z
  .strictObject({
    code: CancelCodeSchema.optional(),
    note: note().optional().openapi({
      description: 'Free text, stored with the order for the record; never e-mailed to anyone.',
      example: 'ordered the wrong size',
    }),
    reason: note().optional().openapi({
      deprecated: true,
      description: 'The old form: taken as `note` with code `other`. Not together with `code` or `note`.',
      example: 'changed my mind',
    }),
  })
  .superRefine((body, ctx) => {
    if (body.reason === undefined) return;
    for (const key of ['code', 'note'] as const) {
      if (body[key] !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['reason'],
          message: `cannot be sent with ${key}; send code and note`,
        });
    }
  })
  .openapi('CancelOrderRequest', {
    description: 'All optional: no body means code `customer_request` with no note.',
  });
export type CancelOrderBody = z.infer<typeof CancelOrderBodySchema>;

export const RetryOrderBodySchema = z
  .strictObject({
    reason: note().optional().openapi({ example: 'payment gateway is back' }),
  })
  .openapi('RetryOrderRequest');

export const OrderIdParamsSchema = z.object({
  id: OrderIdSchema.openapi({ param: { name: 'id', in: 'path' } }),
});

export const SkuParamsSchema = z.object({
  sku: SkuSchema.openapi({ param: { name: 'sku', in: 'path' } }),
});

export const ListOrdersQuerySchema = z.strictObject({
  status: z
    .enum(ORDER_STATUSES, {
      // `?status=A&status=B` arrives as a list: one status per request.
      error: (issue) =>
        Array.isArray(issue.input)
          ? 'must be given once (one status per request)'
          : `must be one of ${ORDER_STATUSES.join(', ')}`,
    })
    .optional()
    .openapi({ param: { name: 'status', in: 'query' } }),
  customer_id: CustomerIdSchema.optional().openapi({
    param: { name: 'customer_id', in: 'query' },
    description:
      "Operators: one customer's orders. A customer's token lists only its own (another id is a 403).",
  }),
  limit: z.coerce
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .min(1, 'must be at least 1')
    .max(LIMITS.maxPageSize, `must be at most ${LIMITS.maxPageSize}`)
    .default(LIMITS.defaultPageSize)
    .openapi({ param: { name: 'limit', in: 'query' }, example: 20 }),
  cursor: z
    .string()
    .min(1, 'must not be empty')
    .max(512, 'is not a cursor this API issued')
    .optional()
    .openapi({
      param: { name: 'cursor', in: 'query' },
      description:
        'Opaque; pass the `nextCursor` of the previous page unchanged, with the same filters and token ' +
        '(a cursor is bound to both: another caller or filter is a 400).',
    }),
});

/** A query-string timestamp: ISO 8601 with its time zone, a real calendar date. */
const timestampParam = (name: string, description: string) =>
  z.iso
    .datetime({
      offset: true,
      error: (issue) =>
        issue.input === undefined
          ? 'is required'
          : 'must be an ISO 8601 timestamp with a time zone, e.g. 2025-01-31T12:00:00Z',
    })
    .optional()
    .openapi({ param: { name, in: 'query' }, description, example: '2025-01-31T12:00:00Z' });

export const AnalyticsSummaryQuerySchema = z
  .strictObject({
    from: timestampParam('from', 'Start of the window, inclusive. Default: none (open-ended).'),
    to: timestampParam('to', 'End of the window, exclusive. Default: none (open-ended).'),
  })
  .superRefine((query, ctx) => {
    if (query.from !== undefined && query.to !== undefined && Date.parse(query.to) <= Date.parse(query.from))
      ctx.addIssue({ code: 'custom', path: ['to'], message: 'must be after from' });
  });

// --------------------------------------------------------------------------------------- outputs

const Money = z.string().openapi({ example: '19.99', description: 'Decimal string; never a float.' });
const Timestamp = z.string().openapi({ example: '2025-01-31T12:00:00.000Z', format: 'date-time' });
const StatusSchema = z.enum(ORDER_STATUSES).openapi('OrderStatus');

export const OrderItemSchema = z
  .object({ sku: z.string(), qty: z.number().int(), unitPrice: Money, lineTotal: Money })
  .openapi('OrderItem');

const RunSchema = z.number().int().openapi({
  example: 1,
  description: 'The saga run: 1 for the order as placed, 2, 3, … for each operator retry.',
});

export const PaymentSchema = z
  .object({
    run: RunSchema,
    status: z.enum(PAYMENT_STATUSES).openapi({ example: 'CAPTURED' }),
    amount: Money,
    currency: z.string(),
    reference: z.string().nullable(),
    failureReason: z.string().nullable(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  })
  .openapi('Payment');

export const NotificationSchema = z
  .object({
    kind: z.string(),
    run: RunSchema,
    /** null once the customer's data was erased (`orders erase-customer`). */
    recipient: z.string().nullable(),
    subject: z.string(),
    createdAt: Timestamp,
  })
  .openapi('Notification');

export const OrderEventSchema = z
  .object({
    eventId: z.string(),
    type: z.string().openapi({ example: 'order.placed' }),
    occurredAt: Timestamp,
    published: z.boolean(),
    publishedAt: Timestamp.nullable(),
  })
  .openapi('OrderEvent');

export const OrderSchema = z
  .object({
    id: z.string(),
    customerId: z.string(),
    /** null once the customer's personal data was erased (`orders erase-customer`). */
    email: z.string().nullable(),
    status: StatusSchema,
    statusReason: z.string().nullable(),
    run: RunSchema,
    total: Money,
    currency: z.string().openapi({ example: 'USD' }),
    correlationId: z.string(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    items: z.array(OrderItemSchema),
    payment: PaymentSchema.nullable().openapi({
      description: "The current run's payment intent: null until that run charges.",
    }),
    payments: z.array(PaymentSchema).openapi({
      description:
        "Every run's payment intent, oldest run first: a retried order's failed runs' too (with their " +
        '`failureReason`), beside the current one.',
    }),
    notifications: z.array(NotificationSchema),
    events: z.array(OrderEventSchema).openapi({ description: 'The outbox timeline, oldest first.' }),
    workflow: z.object({
      id: z.string().openapi({ example: 'order-0b7e6c1e-8f4e-4a7c-9a43-3f0f8f7c2b1d' }),
      url: z
        .string()
        .optional()
        .openapi({ description: 'The workflow in the Temporal Web UI; for operators only.' }),
    }),
  })
  .openapi('Order');
export type OrderView = z.infer<typeof OrderSchema>;

export const OrderSummarySchema = z
  .object({
    id: z.string(),
    customerId: z.string(),
    status: StatusSchema,
    statusReason: z.string().nullable().openapi({
      description: 'Why the order is where it is, in words for its customer (as on `GET /orders/{id}`)',
    }),
    total: Money,
    currency: z.string(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  })
  .openapi('OrderSummary');
export type OrderSummary = z.infer<typeof OrderSummarySchema>;

export const OrderPageSchema = z
  .object({
    items: z.array(OrderSummarySchema),
    nextCursor: z.string().nullable().openapi({ description: 'null on the last page.' }),
  })
  .openapi('OrderPage');

export const CancelResultSchema = z
  .object({
    id: z.string(),
    status: StatusSchema,
    via: z.enum(['workflow', 'database', 'already']).openapi({
      description:
        '`workflow`: the running saga accepted the cancel and compensates. `database`: no saga was running ' +
        '(it had not started yet, and will end on start; or the order was left RESERVED by a run that failed ' +
        'and undid itself), so the order was cancelled directly. `already`: the order was cancelled before ' +
        "this request (a cancel asked again after its answer was lost); the first cancel's code and note stand.",
    }),
    reason: z
      .string()
      .optional()
      .openapi({
        description:
          'The words the order is cancelled with, as its event, status reason and e-mail say: this ' +
          "request's code's wording, or, when it met another cancel (a customer's and an operator's at " +
          "once, or asked again), the first one's, whose code and note are the ones kept.",
        example: 'cancelled at your request (changed your mind)',
      }),
  })
  .openapi('CancelResult');

export const ProductSchema = z
  .object({
    sku: z.string(),
    name: z.string(),
    price: Money,
    currency: z.string(),
    stockQty: z.number().int(),
  })
  .openapi('Product');
export type Product = z.infer<typeof ProductSchema>;

export const ProductListSchema = z.object({ items: z.array(ProductSchema) }).openapi('ProductList');

const countSchema = z.number().int().openapi({ example: 12 });
const secondsSchema = z
  .number()
  .nullable()
  .openapi({ example: 1.84, description: 'null when no order qualifies.' });

export const AnalyticsSummarySchema = z
  .object({
    ordersByHour: z
      .array(
        z.object({
          hour: Timestamp.openapi({ description: 'The hour (UTC) the orders were placed.' }),
          status: z
            .enum(['COMPLETED', 'OUT_OF_STOCK', 'PAYMENT_FAILED', 'CANCELLED', 'IN_PROGRESS'])
            .openapi({
              description:
                "The order's latest run's final status (a retried order counts once), or IN_PROGRESS.",
            }),
          count: countSchema,
        }),
      )
      .openapi({ description: 'Orders placed in the window, by hour and status; oldest first.' }),
    revenue: z
      .array(
        z.object({
          currency: z.string().openapi({ example: 'USD' }),
          captured: Money,
          refunded: Money,
          net: Money,
        }),
      )
      .openapi({
        description:
          'Payments captured and refunded in the window, per currency; net = captured - refunded. A ' +
          'refund counts only against a capture that was announced (payment.completed).',
      }),
    failureReasons: z
      .array(
        z.object({
          reason: z.string().openapi({ example: 'DECLINED: card declined for customer' }),
          count: countSchema,
        }),
      )
      .openapi({
        description:
          'Orders placed in the window whose latest run ended other than COMPLETED: payment failures by ' +
          'code and the leading words of the reason, `out of stock`, `cancelled`. Most frequent first.',
      }),
    timeToFinal: z
      .object({
        count: countSchema,
        avgSeconds: secondsSchema,
        p50Seconds: secondsSchema,
        p95Seconds: secondsSchema,
      })
      .openapi({
        description: "From placed to the latest run's final status, for orders placed in the window.",
      }),
  })
  .openapi('AnalyticsSummary');

export const HealthSchema = z.object({ status: z.literal('ok') }).openapi('Health');

export const ReadinessSchema = z
  .object({
    status: z.enum(['ready', 'not_ready']),
    checks: z.record(
      z.string(),
      z.object({
        status: z.enum(['up', 'down']),
        ms: z.number(),
        error: z.enum(['timeout', 'failed']).optional(),
      }),
    ),
  })
  .openapi('Readiness');

export const ErrorSchema = z
  .object({
    error: z.object({
      // A string, not a closed enum: a client generated from this document must not break when a
      // code is added; the list is in the description (and ERROR_CODES types the server's side).
      code: z.string().openapi({
        example: 'validation_failed' satisfies ErrorCode,
        description:
          'Stable and machine-readable; new codes may be added:\n' +
          Object.entries(ERROR_CODES)
            .map(([code, meaning]) => `- \`${code}\`: ${meaning}`)
            .join('\n'),
      }),
      message: z.string(),
      fields: z
        .array(z.object({ path: z.string().openapi({ example: 'items[0].qty' }), message: z.string() }))
        .optional()
        .openapi({ description: 'Validation errors: each offending field, by path.' }),
      status: StatusSchema.optional().openapi({
        description: "Cancel and retry refusals (409): the order's current status.",
      }),
    }),
  })
  .openapi('Error');

/** The JSON error response, for a route's `responses`. */
export const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: ErrorSchema } },
});

export const retryAfterHeader = z.object({
  'Retry-After': z.string().openapi({ example: '5', description: 'Seconds to wait before retrying.' }),
});

/** The OpenAPI name of the bearer scheme every protected route declares. */
export const BEARER_SCHEME = 'bearerAuth';
/** A route's `security`: a bearer token. */
export const bearerSecurity = [{ [BEARER_SCHEME]: [] }];

/** What every route behind a bearer token may also answer. */
export const authResponses = {
  401: {
    ...errorResponse(
      'No bearer token (`missing_token`), or one that is expired, wrongly signed, unsigned (`alg: none`), or ' +
        'from another issuer or audience (`invalid_token`).',
    ),
    headers: z.object({
      'WWW-Authenticate': z
        .string()
        .openapi({ example: 'Bearer realm="acme-orders", error="invalid_token"' }),
    }),
  },
  403: errorResponse('The token is valid but may not do this (`forbidden`).'),
  503: {
    ...errorResponse('A dependency (database, identity provider, workflow service) is unavailable; retry.'),
    headers: retryAfterHeader,
  },
} as const;

/** ...and every write: the per-caller rate limit. */
export const writeResponses = {
  ...authResponses,
  413: errorResponse('Body too large (`payload_too_large`).'),
  415: errorResponse('Body is not `application/json`, or is encoded (`unsupported_media_type`).'),
  429: {
    ...errorResponse('Too many writes from this caller (`rate_limited`); wait for `Retry-After` seconds.'),
    headers: retryAfterHeader,
  },
} as const;

/**
 * Tracing: one trace per order run, from `POST /orders` through the outbox row, the AMQP message, the
 * bridge, the workflow and each activity, to the events the activities publish and their consumers.
 *
 * This module is what the code calls on its hot paths, and it only uses `@opentelemetry/api`: with
 * tracing off (the default) no SDK is loaded, the API's no-op tracer makes every call here a few
 * property reads, and no trace context is written anywhere. `startTracing` loads the SDK
 * (tracing-sdk.ts) only when TRACING=on.
 *
 * Context crosses the process boundaries that no instrumentation covers by hand, as W3C trace context
 * (`traceparent`, `tracestate`):
 * - into the outbox row's `headers` when an event is written (db/outbox.ts `enqueueEvent`), so the
 *   event belongs to the request or activity that caused it, however late it is published;
 * - from there into the AMQP message's headers (the outbox publisher's `publish <type>` span);
 * - out of them in every consumer (`<queue> process` span, lib/amqp/consumer.ts).
 * Temporal's own interceptors carry it from the bridge's start call to the workflow and activities.
 */
import {
  context,
  propagation,
  trace,
  SpanKind,
  SpanStatusCode,
  type Attributes,
  type Span,
} from '@opentelemetry/api';
import type { ClientInterceptors } from '@temporalio/client';
import type { WorkerOptions } from '@temporalio/worker';
import type { Config } from './config.js';
import type { Logger } from './logger.js';

export { SpanKind };

/** The tracer every span of ours comes from (instrumentations and Temporal's have their own). */
const tracer = () => trace.getTracer('acme-orders');

/** W3C trace context of the active span, to store or send with a message; `{}` when none or off. */
export function traceContextHeaders(): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier;
}

/**
 * Runs `fn` in a new span whose parent is the trace context found in `carrier` (message headers, an
 * outbox row's headers) or, when it holds none, the active context. The span ends when `fn` settles
 * and records a thrown error. With tracing off, `fn` runs with a span that records nothing.
 */
export function withSpan<T>(
  name: string,
  options: { kind: SpanKind; attributes?: Attributes; carrier?: Record<string, unknown> | undefined },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = options.carrier
    ? propagation.extract(context.active(), options.carrier, headerGetter)
    : context.active();
  return tracer().startActiveSpan(
    name,
    { kind: options.kind, ...(options.attributes ? { attributes: options.attributes } : {}) },
    parent,
    async (span) => {
      try {
        return await fn(span);
      } catch (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message });
        throw err;
      } finally {
        span.end();
      }
    },
  );
}

/** AMQP header values arrive as strings or Buffers; anything else is not trace context. */
const headerGetter = {
  keys: (carrier: Record<string, unknown>) => Object.keys(carrier),
  get: (carrier: Record<string, unknown>, key: string) => {
    const value = carrier[key];
    if (typeof value === 'string') return value;
    if (Buffer.isBuffer(value)) return value.toString('utf8');
    return undefined;
  },
};

/** Temporal's OpenTelemetry interceptors, for the processes that talk to Temporal. */
export interface TemporalTracing {
  /** For the client (`new Client({ interceptors })`): the start call carries the trace. */
  clientInterceptors(): ClientInterceptors;
  /** For `Worker.create`: activity spans, and the sink that exports the workflow's spans. */
  workerOptions(): Pick<WorkerOptions, 'interceptors' | 'sinks'>;
  /** Modules the workflow bundle must include (`bundleWorkflowCode({ workflowInterceptorModules })`). */
  workflowInterceptorModules: string[];
}

/** What a process gets back from `startTracing`. */
export interface Tracing {
  readonly enabled: boolean;
  /** Present when tracing is on. */
  readonly temporal?: TemporalTracing;
  /** Flushes spans not yet exported; call once on shutdown. */
  shutdown(): Promise<void>;
}

const OFF: Tracing = { enabled: false, shutdown: async () => {} };

/**
 * Starts tracing for this process when TRACING=on: loads the SDK, registers the W3C propagator, the
 * http and pg instrumentations and the exporter (OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, else
 * Zipkin at ZIPKIN_URL). Call first thing in `main()`, before any request or query. Off: returns at
 * once without importing anything.
 */
export async function startTracing(
  config: Pick<Config, 'TRACING' | 'ZIPKIN_URL' | 'OTEL_EXPORTER_OTLP_ENDPOINT'>,
  serviceName: string,
  logger: Logger,
): Promise<Tracing> {
  if (config.TRACING !== 'on') return OFF;
  const { startTracingSdk } = await import('./tracing-sdk.js');
  return startTracingSdk(config, serviceName, logger);
}

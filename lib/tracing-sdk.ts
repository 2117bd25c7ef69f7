/**
 * The OpenTelemetry SDK, loaded by `startTracing` (tracing.ts) only when TRACING=on.
 *
 * Versions: the 1.x SDK, the range `@temporalio/interceptors-opentelemetry` 1.24 is built against, so
 * one SDK is loaded and the workflow spans its sink exports are the same classes as ours.
 *
 * Instrumentations: `http` (the API's server spans) and `pg` (a span per query). Both patch prototypes
 * through require hooks, and our modules are ESM whose imports ran before `main()`: requiring the
 * modules once more after registering makes the hooks patch the (shared) prototypes in place. amqplib
 * 2.x has no instrumentation; tracing.ts carries the context through it by hand.
 */
import { createRequire } from 'node:module';
import { diag, DiagLogLevel, type Attributes } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { ZipkinExporter } from '@opentelemetry/exporter-zipkin';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { Resource } from '@opentelemetry/resources';
import {
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import {
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
  OpenTelemetryWorkflowClientInterceptor,
  makeWorkflowExporter,
} from '@temporalio/interceptors-opentelemetry';
import type { Config } from './config.js';
import type { Logger } from './logger.js';
import type { TemporalTracing, Tracing } from './tracing.js';

const require = createRequire(import.meta.url);

/** The module the workflow bundle includes for workflow spans (RunWorkflow, StartActivity, timers). */
export const WORKFLOW_INTERCEPTORS_MODULE =
  require.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors');

/** Paths the health checks and scrapes hit every few seconds: no trace for those. */
const UNTRACED_PATHS = new Set(['/health', '/ready', '/metrics']);

export interface TracingSdkOptions {
  /** Replaces the configured exporter (tests: an in-memory exporter), exported without batching. */
  exporter?: SpanExporter;
}

export function startTracingSdk(
  config: Pick<Config, 'ZIPKIN_URL' | 'OTEL_EXPORTER_OTLP_ENDPOINT'>,
  serviceName: string,
  logger: Logger,
  options: TracingSdkOptions = {},
): Tracing {
  diag.setLogger(
    { ...diagTo(logger), verbose: () => {}, debug: () => {}, info: () => {} },
    DiagLogLevel.WARN,
  );
  const resource = new Resource({ 'service.name': serviceName } satisfies Attributes);
  const { exporter, where } = options.exporter
    ? { exporter: options.exporter, where: 'a test exporter' }
    : configuredExporter(config, serviceName);
  const processor: SpanProcessor = options.exporter
    ? new SimpleSpanProcessor(exporter)
    : new BatchSpanProcessor(exporter);

  const provider = new NodeTracerProvider({
    resource,
    spanProcessors: [processor],
    // Every order is traced: a caller's traceparent saying "not sampled" cannot switch that off.
    sampler: new ParentBasedSampler({
      root: new AlwaysOnSampler(),
      remoteParentNotSampled: new AlwaysOnSampler(),
    }),
  });
  // W3C trace context only, no baggage: a caller's baggage (kilobytes of it) would otherwise ride in
  // every outbox row, message and workflow header of its order. AsyncLocalStorage context manager.
  provider.register({ propagator: new W3CTraceContextPropagator() });
  const unregister = registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (req) => UNTRACED_PATHS.has((req.url ?? '').split('?')[0]!),
      }),
      new PgInstrumentation({ enhancedDatabaseReporting: false }),
    ],
  });
  for (const name of ['http', 'pg', 'pg-pool']) require(name); // see the module comment
  logger.info({ service: serviceName, exporter: where }, 'tracing on');

  const temporal: TemporalTracing = {
    clientInterceptors: () => ({ workflow: [new OpenTelemetryWorkflowClientInterceptor()] }),
    workerOptions: () => ({
      interceptors: {
        activity: [
          (ctx) => ({
            inbound: new OpenTelemetryActivityInboundInterceptor(ctx),
            outbound: new OpenTelemetryActivityOutboundInterceptor(ctx),
          }),
        ],
      },
      sinks: { exporter: makeWorkflowExporter(processor, resource) },
    }),
    workflowInterceptorModules: [WORKFLOW_INTERCEPTORS_MODULE],
  };

  return {
    enabled: true,
    temporal,
    async shutdown() {
      unregister();
      await provider.shutdown().catch((err: unknown) => logger.warn({ err }, 'flushing spans failed'));
    },
  };
}

function configuredExporter(
  config: Pick<Config, 'ZIPKIN_URL' | 'OTEL_EXPORTER_OTLP_ENDPOINT'>,
  serviceName: string,
): { exporter: SpanExporter; where: string } {
  if (config.OTEL_EXPORTER_OTLP_ENDPOINT) {
    // The variable names the collector's base URL (as the OpenTelemetry spec defines it); traces go
    // to its /v1/traces path.
    const url = new URL('v1/traces', withSlash(config.OTEL_EXPORTER_OTLP_ENDPOINT)).toString();
    return { exporter: new OTLPTraceExporter({ url }), where: `OTLP ${url}` };
  }
  return {
    exporter: new ZipkinExporter({ url: config.ZIPKIN_URL, serviceName }),
    where: `Zipkin ${config.ZIPKIN_URL}`,
  };
}

const withSlash = (url: string) => (url.endsWith('/') ? url : `${url}/`);

/**
 * The SDK reports a failed export through its diag logger, once per batch; with the viewer not
 * running that would be a line every few seconds. Each distinct message is logged once.
 */
function diagTo(logger: Logger) {
  const seen = new Set<string>();
  const once = (level: 'warn' | 'error') => (message: string) => {
    if (seen.has(message)) return;
    seen.add(message);
    logger[level]({ component: 'opentelemetry' }, message);
  };
  return { warn: once('warn'), error: once('error') };
}

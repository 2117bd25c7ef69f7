/**
 * Entry point of the order-analytics subscriber (`npm run start:analytics`); its metrics and probes
 * are on ANALYTICS_HTTP_PORT. Lifecycle: subscribers/run-subscriber.ts.
 */
import { runSubscriber } from '../run-subscriber.js';
import { createAnalyticsSubscriber } from './consumer.js';

runSubscriber({
  name: 'analytics',
  portSetting: 'ANALYTICS_HTTP_PORT',
  queueSetting: 'ANALYTICS_QUEUE',
  create: createAnalyticsSubscriber,
});

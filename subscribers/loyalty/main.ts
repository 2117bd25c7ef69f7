/**
 * Entry point of the loyalty-points subscriber (`npm run start:loyalty`); its metrics and probes are
 * on LOYALTY_HTTP_PORT. Lifecycle: subscribers/run-subscriber.ts.
 */
import { runSubscriber } from '../run-subscriber.js';
import { createLoyaltySubscriber } from './consumer.js';

runSubscriber({
  name: 'loyalty',
  portSetting: 'LOYALTY_HTTP_PORT',
  queueSetting: 'LOYALTY_QUEUE',
  create: createLoyaltySubscriber,
});

/**
 * The Temporal namespace the integration tests run in (vitest.config.ts sets TEMPORAL_NAMESPACE to it,
 * test/helpers/temporal-setup.ts registers it): their thousands of sagas stay out of the namespace
 * `npm run up` uses, so the Web UI's and the operator CLI's queries there show the system's own orders.
 */
export const TEST_NAMESPACE = 'acme-tests';

import { OpenAPIHono } from '@hono/zod-openapi';
import type { AppEnv } from './env.js';
import { validationError, type InputTarget } from './errors.js';

/**
 * A router whose route validators fail with the API's 400 (`validation_failed`, fields named),
 * thrown so that `onError` renders every error the same way.
 */
export function createRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw validationError(result.error, result.target as InputTarget);
    },
  });
}

/** /products: the catalogue that prices every order. Read-only over HTTP. */
import { createRoute } from '@hono/zod-openapi';
import type { AppDeps } from '../env.js';
import { notFound } from '../errors.js';
import { getProduct, listProducts } from '../../db/products.js';
import { createRouter } from '../router.js';
import {
  ProductListSchema,
  ProductSchema,
  SkuParamsSchema,
  authResponses,
  bearerSecurity,
  errorResponse,
} from '../schemas.js';

export function productsRouter(deps: Pick<AppDeps, 'pool'>) {
  const router = createRouter();

  const listRoute = createRoute({
    method: 'get',
    path: '/',
    tags: ['products'],
    security: bearerSecurity,
    summary: 'The catalogue, by SKU, with current prices and stock',
    responses: {
      200: { description: 'Every product.', content: { 'application/json': { schema: ProductListSchema } } },
      ...authResponses,
    },
  });
  router.openapi(listRoute, async (c) => c.json({ items: await listProducts(deps.pool) }, 200));

  const getRoute = createRoute({
    method: 'get',
    path: '/{sku}',
    tags: ['products'],
    security: bearerSecurity,
    summary: 'One product',
    request: { params: SkuParamsSchema },
    responses: {
      200: { description: 'The product.', content: { 'application/json': { schema: ProductSchema } } },
      ...authResponses,
      400: errorResponse('The SKU is malformed.'),
      404: errorResponse('No such product.'),
    },
  });
  router.openapi(getRoute, async (c) => {
    const { sku } = c.req.valid('param');
    const product = await getProduct(deps.pool, sku);
    if (!product) throw notFound('Product', sku);
    return c.json(product, 200);
  });

  return router;
}

/**
 * `GET /docs`: Swagger UI over `/openapi.json`, served from the installed swagger-ui-dist package,
 * so the page works with no internet access (no CDN).
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Hono } from 'hono';
import type { AppEnv } from '../env.js';
import { notFound } from '../errors.js';

const SWAGGER_DIR = path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

/** The only files served, with their types: nothing else in the package (or outside it) is reachable. */
const ASSETS: Readonly<Record<string, string>> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
};

const INIT_JS = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true });\n`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Acme orders API</title>
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/init.js"></script>
</body>
</html>
`;

export function docsRouter() {
  const router = new Hono<AppEnv>();
  const cache = new Map<string, Promise<Buffer>>();
  const load = (file: string) => {
    let content = cache.get(file);
    if (!content) {
      content = readFile(path.join(SWAGGER_DIR, file));
      content.catch(() => cache.delete(file));
      cache.set(file, content);
    }
    return content;
  };

  router.get('/docs', (c) => c.html(PAGE));
  router.get('/docs/assets/init.js', (c) => {
    c.header('Content-Type', 'text/javascript; charset=utf-8');
    return c.body(INIT_JS);
  });
  router.get('/docs/assets/:file', async (c) => {
    const file = c.req.param('file');
    const type = Object.hasOwn(ASSETS, file) ? ASSETS[file] : undefined;
    if (type === undefined) throw notFound('Asset', file);
    const content = await load(file);
    c.header('Content-Type', type);
    c.header('Cache-Control', 'public, max-age=86400');
    return c.body(new Uint8Array(content));
  });
  return router;
}

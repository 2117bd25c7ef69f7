# One image for every app process (api, outbox, bridge, worker, loyalty, migrate); docker-compose.yml
# picks the process with `command`. Debian (glibc), not Alpine: the Temporal worker's native core
# is built for glibc.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
# The processes run compiled JavaScript (dist/), not TypeScript through a loader: ~40 MB less each.
RUN node scripts/build.mjs
# The API's local key pair (AUTH_LOCAL_KEY_DIR, .data/auth) is made on first start, by this user.
RUN mkdir -p /app/.data && chown node:node /app/.data
USER node
EXPOSE 8000
# node itself is PID 1's child (compose sets `init: true`) and gets SIGTERM directly: `npx` or the
# `npm` in between would swallow it, and the process would be killed without draining.
CMD ["node", "dist/api/main.js"]

# One image for every app process (api, outbox, bridge, worker, loyalty, migrate); docker-compose.yml
# picks the process with `command`. Debian (glibc), not Alpine: the Temporal worker's native core
# is built for glibc.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
USER node
EXPOSE 8000
CMD ["npx", "tsx", "api/main.ts"]

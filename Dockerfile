# One image for the four apps; the command picks the app (see docker-compose.yml).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/config ./config
# The CLI (docker compose exec metering node bin/tollgate.js ...) and the demo the init service creates.
COPY --from=build /app/bin ./bin
COPY --from=build /app/scripts/demo.js ./scripts/demo.js
COPY package.json ./
# The gateway's event spool (GATEWAY_SPOOL_DIR, default .tollgate/spool/<port>) must be the node user's to write.
RUN mkdir -p /app/.tollgate/spool && chown -R node:node /app/.tollgate
USER node
CMD ["node", "dist/apps/gateway/src/main.js"]

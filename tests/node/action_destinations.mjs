// Runs Segment's own action code (@segment/action-destinations, fetched by action-destinations.sh)
// with @segment/actions-core's createTestIntegration against the hub at HUB_URL. The actions'
// HTTP goes through cross-fetch: it is wrapped so the vendors' URLs reach the hub instead.
// Prints one JSON object with each action's outcome; the pytest side checks the database.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { HUB_URL, APP_ID, API_KEY, CHARTMOGUL_TOKEN, WEBHOOK_TOKEN, WEBHOOK_SECRET } = process.env;

// Vendor hosts → the hub's base URL for that wire format.
const HOSTS = {
  "appapi.heymantle.com": "",
  "api.metronome.com": "/metronome",
  "hooks.hub.test": "",
};
const seen = [];
const crossFetchPath = require.resolve("cross-fetch");
const crossFetch = require("cross-fetch");
const realFetch = crossFetch.default || crossFetch;
async function hubFetch(input, init) {
  const url = new URL(typeof input === "string" ? input : input.url);
  if (!(url.host in HOSTS)) throw new Error(`unexpected host ${url.host}: the test must not reach the internet`);
  const target = `${HUB_URL}${HOSTS[url.host]}${url.pathname}${url.search}`;
  seen.push(`${url.host}${url.pathname}`);
  if (typeof input === "string") return realFetch(target, init);
  const hasBody = !["GET", "HEAD"].includes(input.method);
  return realFetch(target, {
    method: input.method,
    headers: input.headers,
    body: hasBody ? Buffer.from(await input.arrayBuffer()) : undefined,
    redirect: "manual",
  });
}
Object.assign(hubFetch, crossFetch, { default: hubFetch, fetch: hubFetch });
require.cache[crossFetchPath].exports = hubFetch;

const { createTestIntegration } = require("@segment/actions-core");
const load = (name) => require(`./vendor/action-destinations/dist/destinations/${name}/index.js`).default;

const out = { seen };
async function run(name, fn) {
  try {
    const responses = await fn();
    out[name] = { ok: true, statuses: responses.map((r) => r.status), bodies: await Promise.all(responses.map((r) => r.data ?? null)) };
  } catch (error) {
    out[name] = { ok: false, error: String(error && (error.message || error)), status: error?.response?.status };
  }
}

const timestamp = "2024-03-01T12:00:00.000Z";
const track = (messageId, extra = {}) => ({
  type: "track",
  event: "Report Generated",
  messageId,
  userId: "user-node",
  timestamp,
  properties: { shop: "node-shop.myshopify.com", rows: 7 },
  context: { groupId: "node-shop.myshopify.com" },
  ...extra,
});

// Mantle (Actions): pushEvent single and batch, identify, against the Mantle-compatible API.
const mantle = createTestIntegration(load("mantle"));
const mantleSettings = { appId: APP_ID, apiKey: API_KEY };
const customerFromShop = { customerId: { "@path": "$.properties.shop" } };
await run("mantlePush", () =>
  mantle.testAction("pushEvent", { event: track("seg-mantle-1"), settings: mantleSettings, mapping: customerFromShop, useDefaultMappings: true }));
await run("mantlePushBatch", () =>
  mantle.testBatchAction("pushEvent", {
    events: [track("seg-mantle-2"), track("seg-mantle-3")],
    settings: mantleSettings,
    mapping: { ...customerFromShop, enable_batching: true },
    useDefaultMappings: true,
  }));
await run("mantleIdentify", () =>
  mantle.testAction("identify", {
    event: {
      type: "identify", userId: "user-node", messageId: "seg-id-1", timestamp,
      traits: { name: "Node Shop", email: "owner@node-shop.test", platformPlanName: "Pro",
                custom_fields: { tier: "gold" }, contact_name: "Ann", contact_email: "ann@node-shop.test" },
    },
    settings: mantleSettings,
    mapping: { platformId: "node-gid-1", myshopifyDomain: "node-shop.myshopify.com" },
    useDefaultMappings: true,
  }));

// Metronome (Actions): sendEvent against the Metronome-compatible endpoint.
const metronome = createTestIntegration(load("metronome"));
await run("metronomeSend", () =>
  metronome.testAction("sendEvent", { event: track("seg-metronome-1"), settings: { apiToken: API_KEY }, useDefaultMappings: true }));

// ChartMogul (Actions): sendCustomer and sendContact against a source's webhook URL.
const chartmogul = createTestIntegration(load("chartmogul"));
const cmSettings = { chartmogul_webhook_url: `https://hooks.hub.test/hooks/${CHARTMOGUL_TOKEN}` };
await run("chartmogulCustomer", () =>
  chartmogul.testAction("sendCustomer", {
    event: { type: "group", userId: "user-node", groupId: "node-co", messageId: "seg-cm-1", timestamp,
             traits: { name: "Node Co", email: "billing@node-co.test", website: "https://node-co.test" } },
    settings: cmSettings, useDefaultMappings: true,
  }));
await run("chartmogulContact", () =>
  chartmogul.testAction("sendContact", {
    event: { type: "identify", userId: "user-node", messageId: "seg-cm-2", timestamp,
             traits: { email: "joe@node-co.test", first_name: "Joe", last_name: "Doe", title: "CFO",
                       company: { id: "node-co", name: "Node Co" } } },
    settings: cmSettings, useDefaultMappings: true,
  }));

// Webhook (Actions): send with a shared secret (X-Signature), one event and a batch.
const webhook = createTestIntegration(load("webhook"));
const hookUrl = `https://hooks.hub.test/hooks/${WEBHOOK_TOKEN}`;
await run("webhookSend", () =>
  webhook.testAction("send", { event: track("seg-hook-1"), settings: { sharedSecret: WEBHOOK_SECRET }, mapping: { url: hookUrl }, useDefaultMappings: true }));
await run("webhookBatch", () =>
  webhook.testBatchAction("send", {
    events: [track("seg-hook-2"), track("seg-hook-3")],
    settings: { sharedSecret: WEBHOOK_SECRET },
    mapping: { url: hookUrl },
    useDefaultMappings: true,
  }));
await run("webhookWrongSecret", () =>
  webhook.testAction("send", { event: track("seg-hook-4"), settings: { sharedSecret: "not-the-secret" }, mapping: { url: hookUrl }, useDefaultMappings: true }));

console.log(JSON.stringify(out));

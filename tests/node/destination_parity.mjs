// Runs Segment's own action code (@segment/action-destinations, fetched by action-destinations.sh)
// the way Segment's servers do, through @segment/actions-core's Destination.onEvent / onBatch with
// one subscription: the destination's preset (or the action's defaultSubscription) for the
// trigger and the action fields' `default`s as the mapping (actions-core's defaultValues), plus
// the few fields a user must fill in (the webhook's url). Events are sent unchanged, so nothing
// of createTestEvent's made-up context is added. Requests go to a local capture server: the
// vendor's hard-coded host is rewritten to CAPTURE_URL; a webhook's url is the capture server's.
//
// A case's `subscribe` and `mapping` (merged over the defaults) stand for what a user would fill in
// where the action has no default (Mantle's customerId, Segment's own actions' ids and traits).
// Segment's own sendTrack / sendIdentify / sendGroup make no request: their results carry the
// `{batch: [...]}` each returns for Segment's platform to send.
//
// Input: CASES, a JSON list of {name, destination, action, settings, subscribe, mapping, events, batch}.
// Prints one JSON object: {defaults: {destination and destination/action: {subscribe, mapping}},
// results: {name: ...}}.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { CASES, CAPTURE_URL } = process.env;

const VENDOR_HOSTS = new Set(["api.metronome.com", "appapi.heymantle.com"]);
const crossFetchPath = require.resolve("cross-fetch");
const crossFetch = require("cross-fetch");
const realFetch = crossFetch.default || crossFetch;
async function captureFetch(input, init) {
  const url = new URL(typeof input === "string" ? input : input.url);
  let target = url.href;
  if (VENDOR_HOSTS.has(url.host)) target = `${CAPTURE_URL}${url.pathname}${url.search}`;
  else if (url.hostname !== "127.0.0.1") throw new Error(`unexpected host ${url.host}: the test must not reach the internet`);
  if (typeof input === "string") return realFetch(target, init);
  const hasBody = !["GET", "HEAD"].includes(input.method);
  return realFetch(target, {
    method: input.method,
    headers: input.headers,
    body: hasBody ? Buffer.from(await input.arrayBuffer()) : undefined,
    redirect: "manual",
  });
}
Object.assign(captureFetch, crossFetch, { default: captureFetch, fetch: captureFetch });
require.cache[crossFetchPath].exports = captureFetch;

const { Destination, defaultValues } = require("@segment/actions-core");
const load = (name) => require(`./vendor/action-destinations/dist/destinations/${name}/index.js`).default;

// The subscription Segment makes for an action: its preset's, else the action's defaultSubscription.
function defaults(definition, actionName) {
  const action = definition.actions[actionName];
  const preset = (definition.presets || []).find((p) => p.partnerAction === actionName && p.subscribe);
  return {
    subscribe: preset?.subscribe ?? action.defaultSubscription ?? null,
    mapping: preset?.mapping ?? defaultValues(action.fields),
  };
}

const out = { defaults: {}, results: {} };
for (const c of JSON.parse(CASES)) {
  const definition = load(c.destination);
  const d = defaults(definition, c.action);
  out.defaults[c.destination] = d;
  out.defaults[`${c.destination}/${c.action}`] = d;
  const subscription = {
    subscribe: c.subscribe ?? d.subscribe,
    partnerAction: c.action,
    mapping: { ...d.mapping, ...(c.mapping || {}) },
  };
  const destination = new Destination(definition);
  try {
    const results = c.batch
      ? await destination.onBatch(c.events, { ...c.settings, subscription })
      : await destination.onEvent(c.events[0], { ...c.settings, subscription });
    out.results[c.name] = { ok: true, results: JSON.parse(JSON.stringify(results)) };
  } catch (error) {
    out.results[c.name] = { ok: false, error: String(error && (error.message || error)), status: error?.status };
  }
}
console.log(JSON.stringify(out));
